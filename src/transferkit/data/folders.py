"""Reading a folder of media files: one subfolder per class, or a flat folder of unlabelled files.

The layout is torchvision's ``ImageFolder`` (``root/<class>/**/<file>``) for images and audio
alike. Files that are not media (``.DS_Store``, ``README.md``, ``labels.csv``) are ignored; hidden
files and folders and ``__MACOSX`` are never read. For several labels per file, the same file (a copy
or a symbolic link) sits in the folder of each of its labels; ``merge_repeated_files`` makes it one
sample labelled ``a|b``.
"""

import os
from pathlib import Path

from transferkit.data.decode import keep_readable
from transferkit.data.samples import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    Samples,
    SkipLog,
    media_modality,
    require_classes,
)
from transferkit.errors import DataError

_SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "dev", "test", "testing"})


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def scan_media(folder: Path) -> list[Path]:
    """Every image or audio file under ``folder``, recursively, sorted, hidden entries left out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(files):
            if not _hidden(name) and media_modality(name) is not None:
                found.append(Path(root) / name)
    return found


def folder_modality(files: list[Path], where: Path, modality: str | None) -> str:
    """The one media modality of ``files``, checked against the ``modality`` asked for.

    Raises:
        DataError: no media files, images mixed with audio, or a contradicting ``modality``.
    """
    images = [f for f in files if media_modality(f) == "image"]
    audio = [f for f in files if media_modality(f) == "audio"]
    if images and audio:
        raise DataError(
            f"{where} mixes image and audio files (e.g. {images[0]} and {audio[0]}); "
            "keep one modality per dataset"
        )
    if not files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS | AUDIO_EXTENSIONS))
        raise DataError(f"no image or audio files found in {where} (looked for {exts})")
    found = "image" if images else "audio"
    if modality == "text":
        raise DataError(
            f"{where} is a folder of {found} files, not text; text data is a CSV, TSV or JSONL file"
        )
    if modality is not None and modality != found:
        raise DataError(
            f"{where} holds {found} files (e.g. {files[0]}), but modality {modality!r} was asked for"
        )
    return found


def read_folder(path: Path, *, modality: str | None, on_error: str, require_labels: bool) -> Samples:
    """Read an image or audio folder; see ``read_dataset`` for the rules."""
    entries = sorted(e for e in path.iterdir() if not _hidden(e.name))
    top_files = [e for e in entries if e.is_file() and media_modality(e) is not None]
    class_files = {d.name: scan_media(d) for d in entries if d.is_dir()}
    labelled = any(class_files.values())
    if labelled and top_files:
        raise DataError(
            f"{path} holds media files at its top level (e.g. {top_files[0].name}) next to class "
            "subfolders; move every file into the subfolder of its class"
        )
    split_like = [name for name in class_files if name.lower() in _SPLIT_NAMES]
    if (
        labelled
        and split_like
        and len(split_like) == len(class_files)
        and all(not any(p.parent == path / name for p in files) for name, files in class_files.items())
    ):
        raise DataError(
            f"{path} looks like a folder of splits ({', '.join(split_like)}), each holding class "
            f"subfolders; pass one split, e.g. {path / split_like[0]}"
        )

    files = [f for fs in class_files.values() for f in fs] if labelled else top_files
    found = folder_modality(files, path, modality)
    if not labelled and require_labels:
        raise DataError(
            f"{path} holds {found} files but no class subfolders; put each class in its own "
            f"subfolder ({path}/<class>/<file>), or read it unlabelled"
        )
    labels = [name for name, fs in class_files.items() for _ in fs] if labelled else None

    log = SkipLog(on_error, str(path))
    origins = [str(f) for f in files]
    kept = keep_readable(files, origins, found, log)
    log.summarise(len(files))
    if not kept:
        raise DataError(f"no readable {found} files in {path} ({len(files)} unreadable)")
    samples = Samples(
        items=[files[i] for i in kept],
        labels=[labels[i] for i in kept] if labels is not None else None,
        modality=found,
        origins=[origins[i] for i in kept],
        skipped=log.skipped,
    )
    if require_labels:
        present = set(samples.classes)
        for name in class_files:
            if name not in present:
                raise DataError(f"class folder {path / name} has no readable {found} files")
        require_classes(samples.labels, str(path))
    return samples


def merge_repeated_files(samples: Samples) -> Samples:
    """One sample per distinct file, labelled with every class folder that holds it (``a|b``).

    Files are the same when their bytes are, so a symbolic link and a copy both count. The first
    occurrence (in class-folder order) names the sample.

    Raises:
        DataError: a class folder whose name contains ``|``, which separates labels.
    """
    from transferkit.data.decode import item_digest

    if samples.labels is None:
        return samples
    bad = sorted({label for label in samples.labels if "|" in label})
    if bad:
        raise DataError(f"class folder {bad[0]!r} has '|' in its name, which separates the labels of a file")
    first: dict[str, int] = {}
    keep: list[int] = []
    names: list[set[str]] = []
    for i, (item, label) in enumerate(zip(samples.items, samples.labels, strict=True)):
        key = item_digest(item)
        if key in first:
            names[first[key]].add(label)
            continue
        first[key] = len(keep)
        keep.append(i)
        names.append({label})
    return Samples(items=[samples.items[i] for i in keep], labels=["|".join(sorted(n)) for n in names],
                   modality=samples.modality, origins=[samples.origins[i] for i in keep], skipped=samples.skipped)
