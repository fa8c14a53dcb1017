"""Entry points that read a user's data from disk: a training dataset, or inputs to predict on."""

import os
from pathlib import Path
from typing import Any

from transferkit.data.decode import keep_readable
from transferkit.data.folders import folder_modality, merge_repeated_files, read_folder, scan_media
from transferkit.data.reviews import is_review_folder, read_review_folder
from transferkit.data.samples import (
    TABLE_EXTENSIONS,
    Samples,
    SkipLog,
    check_modality,
    check_on_error,
    media_modality,
    warn_if_media_path,
)
from transferkit.data.tables import read_table, read_text_lines
from transferkit.errors import ConfigError, DataError
from transferkit.safety import protect_input


def read_dataset(
    path: str | os.PathLike[str],
    *,
    modality: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    path_column: str | None = None,
    on_error: str = "skip",
    require_labels: bool = True,
    multilabel: bool = False,
) -> Samples:
    """Read a labelled (or unlabelled) dataset from a folder or a table.

    ``path`` may be
      * a folder with one subfolder per class holding images (.jpg .jpeg .png .bmp .gif .webp
        .tif) or audio (.wav .flac .ogg .mp3), searched recursively; other files are ignored. A
        flat folder of files reads unlabelled when ``require_labels`` is false;
      * a CSV, TSV or JSONL (``.jsonl``, ``.ndjson``, ``.json`` lines or array) file with a header,
        holding texts and labels, or paths to media files (relative to the table's folder, or
        absolute) and labels;
      * a folder of multi-domain sentiment ``.review`` files (``positive.review``,
        ``negative.review``; Blitzer et al. 2007), the class being the file name;
      * a ``.txt`` file of unlabelled texts, one per line (only when ``require_labels`` is false).

    The modality is inferred from file extensions, and for tables from whether a path column
    (path, file, filename, audio, image) names media files; a path column wins over a text column.
    Every media file is decoded once here, so a corrupt file is reported now, not mid-training.

    Args:
        path: the folder or file.
        modality: ``"image"``, ``"text"`` or ``"audio"`` to require; None to infer.
        text_column: the text column; default the first of text, sentence, content, review,
            document, body, utterance (any case).
        label_column: the label column; default the first of label, labels, class, target,
            category, y (any case). Labels become strings (``0`` -> ``"0"``).
        path_column: the column of media file paths; default the first of path, file, filename,
            audio, image that names media files.
        on_error: for an unreadable file or an empty cell, ``"skip"`` (warn once per item with
            ``SkippedItemWarning``, then once with the count; listed in ``Samples.skipped``) or
            ``"fail"`` (raise DataError naming it).
        require_labels: demand labels with at least two classes, and that no class folder ends
            up empty.
        multilabel: a file held in several class folders (a copy or a symbolic link) is one sample
            with all their labels, ``a|b`` (tables write ``a|b`` in the label cell themselves).

    Returns:
        Samples sorted by class folder then file for folders, in row order for tables.

    Raises:
        DataError: a missing path, unsupported file, missing column (lists the columns), mixed
            modalities, a modality that contradicts the data, an unreadable item with
            ``on_error="fail"``, no samples, or (with ``require_labels``) a single class or an
            empty class folder.
        ConfigError: an unknown ``modality`` or ``on_error``, or a column option for a folder.

    Example:
        >>> samples = read_dataset("sst2/dev.tsv", label_column="label")
        >>> samples.modality, samples.classes
        ('text', ['0', '1'])
    """
    check_modality(modality)
    check_on_error(on_error)
    p = Path(path).expanduser()
    protect_input(p)  # never deleted or replaced by this process (transferkit.safety)
    if p.is_dir():
        given = {"text_column": text_column, "label_column": label_column, "path_column": path_column}
        named = [k for k, v in given.items() if v is not None]
        if named:
            raise ConfigError(f"{', '.join(named)} applies to CSV/TSV/JSONL files, but {p} is a folder")
        if is_review_folder(p) and modality in (None, "text"):
            return read_review_folder(p, require_labels=require_labels)
        samples = read_folder(p, modality=modality, on_error=on_error, require_labels=require_labels)
        return merge_repeated_files(samples) if multilabel else samples
    if not p.is_file():
        raise DataError(f"no such file or folder: {p}")
    suffix = p.suffix.lower()
    if suffix in TABLE_EXTENSIONS:
        return read_table(
            p,
            modality=modality,
            text_column=text_column,
            label_column=label_column,
            path_column=path_column,
            on_error=on_error,
            require_labels=require_labels,
        )
    if suffix == ".txt":
        if require_labels:
            raise DataError(
                f"{p} is a plain text file without labels; use a CSV, TSV or JSONL file with a label column"
            )
        if modality not in (None, "text"):
            raise DataError(f"{p} is a text file, but modality {modality!r} was asked for")
        return read_text_lines(p)
    kind = media_modality(p)
    if kind is not None:
        raise DataError(
            f"{p} is a single {kind} file; a dataset is a folder with one subfolder per class, or a "
            "CSV/TSV/JSONL file"
        )
    raise DataError(
        f"{p}: unsupported file type {p.suffix or '(no extension)'!r}; expected a folder or a "
        ".csv, .tsv, .jsonl file"
    )


def read_inputs(inputs: list[str], modality: str, *, on_error: str = "skip") -> Samples:
    """Read the inputs of ``predict``: files, folders or literal texts, in the order given.

    For images and audio each input is a media file or a folder of them (searched recursively).
    For text each input is a literal string, a ``.txt`` file of one text per line, or a
    CSV/TSV/JSONL file with a text column (its labels, if any, are ignored).

    Args:
        inputs: the inputs as typed on the command line.
        modality: the modality the model takes.
        on_error: ``"skip"`` (warn and leave out unreadable files) or ``"fail"``.

    Returns:
        Unlabelled Samples; origins are file paths, ``notes.txt line 3`` or ``input 2``.

    Raises:
        DataError: no inputs, a missing file or folder, a file of another modality, or nothing
            readable.
        ConfigError: an unknown ``modality`` or ``on_error``.

    Example:
        >>> read_inputs(["a great film", "dull"], "text").items
        ['a great film', 'dull']
    """
    check_modality(modality)
    if modality is None:
        raise ConfigError("read_inputs needs the model's modality")
    log = SkipLog(on_error, "the inputs")
    if not inputs:
        raise DataError("no inputs given")
    items: list[Any] = []
    origins: list[str] = []
    skipped: list[tuple[str, str]] = []  # from tables, which keep their own log
    for n, raw in enumerate(inputs, 1):
        p = Path(raw).expanduser()
        part = _text_input(raw, p, n, log, on_error) if modality == "text" else _media_input(p, modality, log)
        if part is not None:
            items += part.items
            origins += part.origins
            skipped += part.skipped
    log.summarise(len(items) + len(log.skipped))
    if not items:
        unread = skipped + log.skipped
        first = f": {unread[0][0]}: {unread[0][1]}" if unread else ""
        more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
        raise DataError(f"no readable {modality} inputs{first}{more}")
    return Samples(
        items=items, labels=None, modality=modality, origins=origins, skipped=skipped + log.skipped
    )


def _text_input(raw: str, p: Path, n: int, log: SkipLog, on_error: str) -> Samples | None:
    if not raw.strip():  # before the path checks: Path("") is the current folder
        log.bad(f"input {n}", "empty text")
        return None
    suffix = p.suffix.lower()
    if p.is_dir():
        raise DataError(
            f"{p} is a folder; text inputs are strings, .txt files (one text per line) or CSV/TSV/JSONL files"
        )
    if p.is_file() and suffix == ".txt":
        return read_text_lines(p)
    if p.is_file() and suffix in TABLE_EXTENSIONS:
        return read_dataset(p, modality="text", on_error=on_error, require_labels=False)
    if suffix in TABLE_EXTENSIONS | {".txt"} and not any(c.isspace() for c in raw):
        raise DataError(f"no such file: {p}")
    warn_if_media_path(raw, f"input {n}")
    return Samples(items=[raw], labels=None, modality="text", origins=[f"input {n}"])


def _media_input(p: Path, modality: str, log: SkipLog) -> Samples | None:
    if p.is_dir():
        files = scan_media(p)
        folder_modality(files, p, modality)
    elif p.is_file():
        kind = media_modality(p)
        if kind != modality:
            what = f"an {kind} file" if kind else "not an image or audio file"
            raise DataError(f"{p} is {what}, but the model takes {modality}")
        files = [p]
    else:
        raise DataError(f"no such file or folder: {p}")
    origins = [str(f) for f in files]
    kept = keep_readable(files, origins, modality, log)
    if not kept:
        return None
    return Samples(
        items=[files[i] for i in kept], labels=None, modality=modality, origins=[origins[i] for i in kept]
    )
