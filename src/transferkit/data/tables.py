"""Reading tables: CSV, TSV or JSONL files of texts and labels, or of media file paths and labels.

Columns are found by the names datasets usually use (``text``, ``sentence``, ... and ``label``,
``class``, ...), case-insensitively, or named by the user. Cells are read as written: labels stay
strings (``0`` is ``"0"``; a multi-label cell is ``a|b``, and a JSONL list of names becomes one), and
TSV fields are taken literally (GLUE-style, no quote processing).
Rows are named the way a spreadsheet numbers them: the header is row 1 of a CSV or TSV, so its first
data row is ``data.csv row 2``; JSONL rows are named by line.
"""

import codecs
import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from transferkit.data.decode import keep_readable
from transferkit.data.samples import Samples, SkipLog, label_to_str, media_modality, require_classes
from transferkit.errors import DataError

TEXT_COLUMNS: tuple[str, ...] = ("text", "sentence", "content", "review", "document", "body", "utterance")
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "class", "target", "category", "y")
PATH_COLUMNS: tuple[str, ...] = ("path", "file", "filename", "audio", "image")


def read_table(
    path: Path,
    *,
    modality: str | None,
    text_column: str | None,
    label_column: str | None,
    path_column: str | None,
    on_error: str,
    require_labels: bool,
) -> Samples:
    """Read a CSV/TSV/JSONL table of texts or media paths; see ``read_dataset`` for the rules."""
    log = SkipLog(on_error, str(path))
    frame, origins = _load_frame(path, log)
    total = len(frame) + len(log.skipped)  # JSONL lines that did not parse are rows too
    columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"no rows in {path}")

    pcol = _find_column(path, columns, path_column, PATH_COLUMNS, "path", "--path-column", required=False)
    if modality == "text" and path_column is not None:
        raise DataError(f"a path column ({path_column!r}) was given, but modality 'text' was asked for")
    use_paths = (
        modality in ("image", "audio")
        or path_column is not None
        or (modality is None and pcol is not None and _names_media(frame[pcol]))
    )
    if use_paths and pcol is None:
        raise DataError(
            f"modality {modality!r} needs a column of file paths in {path} (looked for "
            f"{', '.join(PATH_COLUMNS)}); columns: {', '.join(columns)}; pass --path-column NAME"
        )
    value_col = (
        pcol
        if use_paths
        else _find_column(path, columns, text_column, TEXT_COLUMNS, "text", "--text-column", required=True)
    )
    assert value_col is not None
    lcol = _find_column(
        path,
        columns,
        label_column,
        LABEL_COLUMNS,
        "label",
        "--label-column",
        required=require_labels or label_column is not None,
    )

    items: list[Any] = []  # texts, or resolved file paths
    labels: list[str] = []
    kept_origins: list[str] = []
    for value, label, origin in zip(
        frame[value_col].tolist(),
        frame[lcol].tolist() if lcol is not None else [None] * len(frame),
        origins,
        strict=True,
    ):
        if _blank(value):
            log.bad(origin, f"empty {'path' if use_paths else 'text'} in column {value_col!r}")
            continue
        if isinstance(value, dict | list):  # JSONL: only a string (or a number) is a text or a path
            log.bad(origin, f"{'a path' if use_paths else 'a text'} must be one string, not a JSON "
                            f"{'object' if isinstance(value, dict) else 'list'} (column {value_col!r})")
            continue
        if lcol is not None:
            if _blank(label):
                log.bad(origin, f"empty label in column {lcol!r}")
                continue
            if isinstance(label, dict):
                log.bad(origin, "a label must be one value, or a list of label names")
                continue
            # a JSONL list of label names: several labels, written a|b
            labels.append("|".join(sorted({label_to_str(v) for v in label})) if isinstance(label, list)
                          else label_to_str(label))
        if use_paths:
            file = Path(str(value).strip()).expanduser()
            items.append(file if file.is_absolute() else path.parent / file)
        else:
            items.append(value if isinstance(value, str) else str(value))
        kept_origins.append(origin)

    found = "text"
    label_origins = None
    if use_paths and items:
        found = _paths_modality(path, items, kept_origins, modality)
        rows = [f"{f} ({o})" for f, o in zip(items, kept_origins, strict=True)]
        kept = keep_readable(items, rows, found, log)
        items = [items[i] for i in kept]
        labels = [labels[i] for i in kept] if lcol is not None else labels
        label_origins = [rows[i] for i in kept]  # a label is named by its row
        kept_origins = [str(f) for f in items]  # a file is named by its path, as in folders
    log.summarise(total)
    if not items:
        raise DataError(f"no usable rows in {path} ({total} rows, all unreadable)")
    samples = Samples(
        items=items,
        labels=labels if lcol is not None else None,
        modality=found,
        origins=kept_origins,
        skipped=log.skipped,
        label_origins=label_origins,
    )
    if require_labels:
        require_classes(samples.labels, f"column {lcol!r} of {path}")
    return samples


def read_text_lines(path: Path) -> Samples:
    """Unlabelled texts, one per non-blank line of a UTF-8 text file (``notes.txt line 3``)."""
    try:
        lines = path.read_text(encoding=text_encoding(path)).splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    texts = [(line.strip(), f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not texts:
        raise DataError(f"no text in {path}")
    return Samples(items=[t for t, _ in texts], labels=None, modality="text", origins=[o for _, o in texts])


# Byte-order marks, longest first: a UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def text_encoding(path: Path) -> str:
    """The encoding of a text file: the one its byte-order mark names (spreadsheets save "Unicode
    text" as UTF-16 with a mark), else UTF-8."""
    with path.open("rb") as f:
        start = f.read(4)
    return next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8")


def _load_frame(path: Path, log: SkipLog) -> tuple[pd.DataFrame, list[str]]:
    """The table as a DataFrame, with one origin string per row."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        records, origins = _load_json_records(path, log)
        return pd.DataFrame.from_records(records), origins
    tsv = suffix == ".tsv"
    try:
        with warnings.catch_warnings():
            # a row longer than the header would otherwise become an index or be cut silently
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep="\t" if tsv else ",",
                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
                dtype=str,
                keep_default_na=False,
                index_col=False,
                encoding=text_encoding(path),
            )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, csv.Error, ValueError) as exc:
        raise DataError(f"{path}: malformed {'TSV' if tsv else 'CSV'} ({str(exc).strip()})") from None
    return frame, [f"{path} row {i}" for i in range(2, len(frame) + 2)]


def _load_json_records(path: Path, log: SkipLog) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        text = path.read_text(encoding=text_encoding(path))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    records: list[dict[str, Any]] = []
    origins: list[str] = []
    if text.lstrip().startswith("["):  # a JSON array of objects rather than JSON lines
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
        numbered = [(f"{path} [{i}]", item) for i, item in enumerate(items)]
    else:
        numbered = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((f"{path} line {n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    log.bad(f"{path} line {n}", f"invalid JSON ({exc.msg})")
    for origin, item in numbered:
        if isinstance(item, dict):
            records.append(item)
            origins.append(origin)
        else:
            log.bad(origin, f"expected a JSON object with named fields, got {type(item).__name__}")
    return records, origins


def _find_column(
    path: Path,
    columns: list[str],
    given: str | None,
    defaults: tuple[str, ...],
    what: str,
    option: str,
    *,
    required: bool,
) -> str | None:
    """The column named ``given``, else the first of ``defaults`` present (any case)."""
    listing = ", ".join(repr(c) for c in columns)
    if given is not None:
        if given not in columns:
            raise DataError(f"no column {given!r} in {path}; columns: {listing}; pass {option} NAME")
        return given
    for name in defaults:
        if name in columns:
            return name
    lowered = {c.lower(): c for c in columns}
    for name in defaults:
        if name in lowered:
            return lowered[name]
    if required:
        raise DataError(
            f"no {what} column in {path} (looked for {', '.join(defaults)}); columns: {listing}; "
            f"pass {option} NAME"
        )
    return None


def _names_media(column: pd.Series) -> bool:
    """Whether most of the first non-empty cells end in an image or audio extension."""
    values = [str(v).strip() for v in column.tolist() if not _blank(v)][:50]
    return bool(values) and sum(media_modality(v) is not None for v in values) * 2 >= len(values)


def _paths_modality(path: Path, files: list[Path], origins: list[str], modality: str | None) -> str:
    """The one media modality the file paths of a table name, checked against ``modality``."""
    first: dict[str, str] = {}
    for file, origin in zip(files, origins, strict=True):
        kind = media_modality(file)
        if kind is not None:
            first.setdefault(kind, f"{file} ({origin})")
    if len(first) > 1:
        raise DataError(
            f"{path} names both image and audio files (e.g. {first['image']} and {first['audio']}); "
            "keep one modality per dataset"
        )
    if not first:
        raise DataError(f"{path}: the path column names no image or audio files")
    (found,) = first
    if modality is not None and modality != found:
        raise DataError(
            f"{path} names {found} files (e.g. {first[found]}), but modality {modality!r} was asked for"
        )
    return found


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return False
