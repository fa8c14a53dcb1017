"""The one container every reader returns: items, labels, modality and where each item came from.

Whatever the user hands us (an image folder, a CSV of sentences, a list of numpy waveforms), the
rest of the package sees a ``Samples``: raw items in one modality, their class names as strings
and, per item, the name to use in error messages (a file path, or ``data.csv row 12``).
"""

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from transferkit.errors import ConfigError, DataError

Modality = Literal["image", "text", "audio"]
MODALITIES: tuple[str, ...] = ("image", "text", "audio")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3"})
TABLE_EXTENSIONS: frozenset[str] = frozenset({".csv", ".tsv", ".jsonl", ".json", ".ndjson"})

OnError = Literal["skip", "fail"]


class SkippedItemWarning(UserWarning):
    """An unreadable file or row was left out (``on_error="skip"``)."""


@dataclass
class Samples:
    """Raw items of one modality with optional class labels.

    Attributes:
        items: texts (``str``), media files (``pathlib.Path``) or in-memory items (a PIL image,
            an image array ``(H, W[, C])``, a mono waveform, or a ``(waveform, sample_rate)``
            tuple).
        labels: one class name per item, as strings; None when unlabelled.
        modality: ``"image"``, ``"text"`` or ``"audio"``.
        origins: per item, what to name in errors and predictions: the file path, a table row
            (``data.csv row 12``) or an index (``X[3]``).
        skipped: ``(origin, reason)`` of each file or row left out while reading. Describes the
            read, so ``subset`` does not carry it over.
        label_origins: per item, where its label was read when that is not its origin (the table
            row of a media path: ``photo.png (data.csv row 12)``); None: the origins.

    Raises:
        DataError: items, labels and origins differ in length.
        ConfigError: unknown modality.
    """

    items: list[Any]
    labels: list[str] | None
    modality: str
    origins: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label_origins: list[str] | None = None

    def __post_init__(self) -> None:
        check_modality(self.modality)
        if len(self.origins) != len(self.items):
            raise DataError(f"{len(self.items)} items but {len(self.origins)} origins")
        if self.label_origins is not None and len(self.label_origins) != len(self.items):
            raise DataError(f"{len(self.items)} items but {len(self.label_origins)} label origins")
        if self.labels is not None and len(self.labels) != len(self.items):
            raise DataError(f"{len(self.items)} items but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> list[str]:
        """The sorted distinct labels (empty when unlabelled)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    @property
    def label_sources(self) -> list[str]:
        """Per item, what to name in an error about its label: the file and row it was read from."""
        return self.label_origins if self.label_origins is not None else self.origins

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Samples":
        """The samples at ``indices`` (or where a boolean mask is true), in that order.

        Example:
            >>> train = samples.subset(train_idx)
        """
        if isinstance(indices, np.ndarray) and indices.dtype == np.bool_:
            indices = np.flatnonzero(indices)  # a boolean mask, not the indices 0 and 1
        idx = [int(i) for i in indices]
        return Samples(
            items=[self.items[i] for i in idx],
            labels=[self.labels[i] for i in idx] if self.labels is not None else None,
            modality=self.modality,
            origins=[self.origins[i] for i in idx],
            label_origins=None if self.label_origins is None else [self.label_origins[i] for i in idx],
        )


def check_modality(modality: str | None) -> None:
    """Raise ConfigError unless ``modality`` is None or one of ``MODALITIES``."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")


def check_on_error(on_error: str) -> None:
    """Raise ConfigError unless ``on_error`` is ``"skip"`` or ``"fail"``."""
    if on_error not in ("skip", "fail"):
        raise ConfigError(f"on_error must be 'skip' or 'fail', not {on_error!r}")


def media_modality(path: str | os.PathLike[str]) -> str | None:
    """``"image"`` or ``"audio"`` from a file's extension; None for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    return None


class MediaPathAsTextWarning(UserWarning):
    """A text model was given what looks like the path of an image or audio file."""


def warn_if_media_path(text: str, origin: str) -> None:
    """Warn that ``text`` looks like the path of an image or audio file (one word with a media extension):
    a text model classifies it as the sentence it is, which is rarely what the user meant."""
    stripped = text.strip()
    kind = media_modality(stripped) if stripped and not any(c.isspace() for c in stripped) else None
    if kind is not None:
        warnings.warn(f"{origin} ({stripped!r}) looks like the path of an {kind} file, but this model "
                      "classifies text: it is classified as that text", MediaPathAsTextWarning, stacklevel=3)


def label_to_str(value: Any) -> str:
    """A class label as the string the rest of the package uses.

    Integers and integral floats become their digits (``1``, ``1.0`` and ``np.int64(1)`` all give
    ``"1"``) so that a CSV, a JSONL and a numpy ``y`` of the same labels agree.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def require_classes(labels: Sequence[str] | None, source: str) -> None:
    """Check there are labels with at least two classes.

    Args:
        labels: class names, one per sample.
        source: where the labels came from, for the message (a path, ``column 'y' of data.csv``).

    Raises:
        DataError: no labels, no samples, or a single class.
    """
    if labels is None:
        raise DataError(f"no labels in {source}")
    if not labels:
        raise DataError(f"no samples in {source}")
    counts = Counter(labels)
    if len(counts) < 2:
        (only,) = counts
        raise DataError(f"found only one class {only!r} in {source}; need at least two")


class SkipLog:
    """Applies one ``on_error`` policy to the unreadable items of one read.

    With ``"fail"`` the first problem raises DataError naming the item; with ``"skip"`` each one
    warns once (``SkippedItemWarning``) and is remembered for ``Samples.skipped``.
    """

    def __init__(self, on_error: str, source: str) -> None:
        check_on_error(on_error)
        self.on_error = on_error
        self.source = source
        self.skipped: list[tuple[str, str]] = []

    def bad(self, origin: str, reason: str) -> None:
        """Record (or raise for) the unreadable item ``origin``."""
        if self.on_error == "fail":
            raise DataError(f"{origin}: {reason}")
        self.skipped.append((origin, reason))
        warnings.warn(f"skipping {origin}: {reason}", SkippedItemWarning, stacklevel=3)

    def summarise(self, total: int) -> None:
        """Warn once with the number of items skipped out of ``total``."""
        if self.skipped:
            warnings.warn(
                f"skipped {len(self.skipped)} of {total} items in {self.source} that could not be read",
                SkippedItemWarning,
                stacklevel=3,
            )
