"""Streaming prediction into a CSV file: any number of inputs, bounded memory, resumable.

``transferkit predict RUN FOLDER --out predictions.csv`` lists the inputs lazily (a folder is walked one
directory at a time), decodes and transforms them in DataLoader worker processes, and appends one row per
input to the CSV, flushed after every batch. Memory holds a few batches and the names of the inputs already
written, never the inputs. An interrupted run resumes with the same command: the rows already in the file
(and the inputs already logged as unreadable) are skipped, so each input is written once. A corrupt or
unreadable file never stops the run: it goes to ``predictions.csv.skipped.csv`` with the reason, and the run
ends with the count.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from transferkit.backbones.base import Backbone
from transferkit.data import read_dataset
from transferkit.data.folders import _hidden
from transferkit.data.samples import TABLE_EXTENSIONS, SkippedItemWarning, media_modality
from transferkit.errors import ArtifactError, DataError
from transferkit.features import decode_item
from transferkit.heads import TransferModel
from transferkit.safety import check_writable, drop_partial_line, input_inside, open_for_append, protect_input
from transferkit.tasks.base import Task

HEADER = ["input", "prediction", "record"]
SKIPPED_HEADER = ["input", "reason"]
# inputs of a task with its own prediction path (a tag per word) are predicted this many at a time
CHUNK = 256

Source = Callable[[], Iterator[tuple[str, Any]]]


@dataclass
class StreamResult:
    """How many rows this call wrote, how many inputs it skipped as unreadable, and how many were already
    in the file from an earlier, interrupted call."""

    written: int
    skipped: int
    resumed: int


def list_inputs(inputs: list[str], modality: str) -> Source:
    """A function that yields ``(origin, item)`` for every input, lazily, in a fixed order.

    Folders are walked one directory at a time (sorted, hidden entries left out); media files are yielded
    as paths, not decoded. For text, a ``.txt`` file yields its lines; a CSV/TSV/JSONL table is read whole
    (its rows, not any media they name) with the same reader as ``fit``; anything else is a literal text.

    Raises:
        DataError: a missing file or folder (checked now, before anything is written).
    """
    for raw in inputs:
        p = Path(raw).expanduser()
        if modality != "text" and not p.exists() and p.suffix.lower() not in TABLE_EXTENSIONS:
            raise DataError(f"no such file or folder: {p}")
        protect_input(p)

    def source() -> Iterator[tuple[str, Any]]:
        for n, raw in enumerate(inputs, 1):
            p = Path(raw).expanduser()
            if p.is_file() and p.suffix.lower() in TABLE_EXTENSIONS:
                samples = read_dataset(p, modality=modality, require_labels=False)
                yield from zip(samples.origins, samples.items, strict=True)
            elif modality == "text":
                yield from _text_items(raw, p, n)
            elif p.is_dir():
                yield from ((str(f), f) for f in _walk_media(p))
            else:
                yield str(p), p

    return source


def _text_items(raw: str, p: Path, n: int) -> Iterator[tuple[str, Any]]:
    if p.is_file() and p.suffix.lower() == ".txt":
        with p.open(encoding="utf-8", errors="replace") as f:
            for line_number, line in enumerate(f, 1):
                if line.strip():
                    yield f"{p} line {line_number}", line.rstrip("\n")
    else:
        yield f"input {n}", raw


def _walk_media(folder: Path) -> Iterator[Path]:
    """Media files under ``folder``, recursively, sorted per directory, listed as the walk goes."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(files):
            if not _hidden(name) and media_modality(name) is not None:
                yield Path(root) / name


class StreamDataset(IterableDataset):
    """Decoded, transformed inputs ``(origin, sample, None)``, or ``(origin, None, reason)`` for one that
    cannot be read. Worker ``k`` of ``K`` takes every ``K``-th input; inputs in ``done`` are passed over."""

    def __init__(self, source: Source, backbone: Backbone, done: frozenset[str]) -> None:
        self.source, self.backbone, self.done = source, backbone, done

    def __iter__(self) -> Iterator[tuple[str, Any, str | None]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, (origin, item) in enumerate(self.source()):
            if index % workers != worker or origin in self.done:
                continue
            try:
                sample = self.backbone.transform(decode_item(item, self.backbone), train=False)
            except Exception as exc:  # noqa: BLE001  any failure of one input is that input's, never the run's
                yield origin, None, _reason(exc).removeprefix(f"{origin}: ")
                continue
            yield origin, sample, None


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if isinstance(exc, DataError) else f"{type(exc).__name__}: {text}"


def predict_to_csv(model: TransferModel, task: Task, source: Source, out: Path, *, batch_size: int = 32,
                   workers: int = 2, top_k: int = 3, progress: bool = True) -> StreamResult:
    """Append one row ``input, prediction, record`` (the record as JSON) per input of ``source`` to ``out``.

    Rows already in ``out`` and inputs already in its skipped log are not predicted again (an interrupted
    call resumes). Rows are flushed after every batch.

    Raises:
        ArtifactError: ``out`` is one of the inputs, a folder, or a file that is not a predictions file.
    """
    skipped_path = out.with_name(out.name + ".skipped.csv")
    done_rows = _open_previous(out, HEADER)
    done_skipped = _open_previous(skipped_path, SKIPPED_HEADER)
    done = frozenset(done_rows | done_skipped)
    model.eval()
    pooled = type(task).predict_outputs is Task.predict_outputs
    written = skipped = 0
    rows, bad_rows = _CsvAppender(out, HEADER), _CsvAppender(skipped_path, SKIPPED_HEADER)
    try:
        bar = tqdm(desc=f"predict → {out.name}", unit="input", disable=not progress, initial=len(done))
        batches = (_loader_batches(model, task, source, done, batch_size, workers) if pooled
                   else _chunk_batches(model, task, source, done))
        for origins, scores, bad in batches:
            for origin, score in zip(origins, scores, strict=True):
                record = task.record(score, top_k=top_k)
                rows.writerow([origin, task.table_row(record)[0], json.dumps(record)])
            for origin, reason in bad:
                bad_rows.writerow([origin, reason])
                warnings.warn(f"skipping {origin}: {reason}", SkippedItemWarning, stacklevel=2)
            rows.flush()
            bad_rows.flush()
            written, skipped = written + len(origins), skipped + len(bad)
            bar.update(len(origins) + len(bad))
        bar.close()
    finally:
        rows.close()
        bad_rows.close()
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable inputs (listed in {skipped_path})", SkippedItemWarning,
                      stacklevel=2)
    return StreamResult(written=written, skipped=skipped, resumed=len(done))


Batch = tuple[list[str], np.ndarray, list[tuple[str, str]]]


def _loader_batches(model: TransferModel, task: Task, source: Source, done: frozenset[str], batch_size: int,
                    workers: int) -> Iterator[Batch]:
    """Pooled features → head → the task's scores, batch by batch from DataLoader workers."""
    backbone = model.backbone

    def collate(triples: list[tuple[str, Any, str | None]]) -> tuple[list[str], Any, list[tuple[str, str]]]:
        good = [(origin, sample) for origin, sample, reason in triples if reason is None]
        bad = [(origin, reason) for origin, _, reason in triples if reason is not None]
        batch = backbone.collate([sample for _, sample in good]) if good else None
        return [origin for origin, _ in good], batch, bad

    loader = DataLoader(StreamDataset(source, backbone, done), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate, persistent_workers=False)
    with torch.inference_mode():
        for origins, batch, bad in loader:
            if batch is None:
                yield [], np.zeros((0,)), bad
                continue
            outputs = model.head(backbone.forward_features(**batch)).float().numpy()
            yield origins, task.decode(outputs), bad


def _chunk_batches(model: TransferModel, task: Task, source: Source, done: frozenset[str]) -> Iterator[Batch]:
    """For a task with its own prediction path: ``CHUNK`` inputs at a time through ``task.predict_outputs``."""
    from transferkit.data import Samples

    modality = model.backbone.modality
    pending: list[tuple[str, Any]] = []

    def flush() -> Batch:
        samples = Samples(items=[item for _, item in pending], labels=None, modality=modality,
                          origins=[origin for origin, _ in pending])
        scores = task.decode(task.predict_outputs(model, samples, use_cache=False))
        return samples.origins, scores, []

    for origin, item in source():
        if origin not in done:
            pending.append((origin, item))
        if len(pending) == CHUNK:
            yield flush()
            pending = []
    if pending:
        yield flush()


def _open_previous(path: Path, header: list[str]) -> set[str]:
    """The first column of the rows already in ``path`` (empty when there is no file). A last line cut off
    by an interruption is removed, so that the next row starts on its own line.

    Raises:
        ArtifactError: ``path`` is an input, a folder, or a file with another header.
    """
    if input_inside(path) == Path(os.path.realpath(os.path.abspath(path))):
        raise ArtifactError(f"refusing to write {path}: it is one of the inputs; choose another --out")
    if path.is_dir():
        raise ArtifactError(f"cannot write {path}: it is a folder; --out names a .csv file")
    check_writable(path.parent, what="predictions file", target=path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    drop_partial_line(path)  # an interrupted write: drop the partial row
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        if next(reader, None) != header:
            raise ArtifactError(f"refusing to append to {path}: it is not a transferkit predictions file (its first "
                                f"line is not {','.join(header)}); choose another --out")
        return {row[0] for row in reader if row}


class _CsvAppender:
    """Rows appended to ``path``, opened on the first row, with ``header`` first when the file is new or empty."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header = path, header
        self.file: TextIO | None = None

    def writerow(self, row: list[str]) -> None:
        if self.file is None:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self.file = open_for_append(self.path)
            self.writer = csv.writer(self.file)
            if fresh:
                self.writer.writerow(self.header)
        self.writer.writerow(row)

    def flush(self) -> None:
        """Rows on disk, so that an interruption loses at most the batch being predicted."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
