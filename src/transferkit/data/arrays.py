"""Samples from in-memory data, for the Python API (``model.fit(X, y)``).

``X`` may be a batch of images as one array, a list of PIL images or image arrays, a list of
strings (texts, or paths to media files), or a list of waveforms. The modality is inferred from
what the items are, and every item is checked up front so a bad one is named by its index.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.data.decode import check_image_array, check_waveform, keep_readable
from transferkit.data.samples import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    Samples,
    SkipLog,
    check_modality,
    label_to_str,
    media_modality,
    warn_if_media_path,
)
from transferkit.errors import DataError


def samples_from_arrays(
    X: Any,
    y: Sequence[Any] | np.ndarray | None = None,
    modality: str | None = None,
    *,
    on_error: str = "fail",
) -> Samples:
    """Wrap in-memory data as ``Samples``, inferring and checking the modality.

    Args:
        X: one of
            * an array ``(N, H, W)`` or ``(N, H, W, C)`` (C = 1, 3 or 4) of images, ``uint8`` or
              floats in ``[0, 1]``;
            * an array ``(N, T)`` of equal-length waveforms at 16 kHz (needs ``modality="audio"``);
            * a list of PIL images or image arrays ``(H, W[, C])``;
            * a list of strings: texts, or paths to image/audio files (recognised by extension;
              ``modality="text"`` makes every string a text);
            * a list of 1-D waveforms at 16 kHz, or of ``(waveform, sample_rate)`` tuples.
        y: one label per item (numbers or strings), converted to strings; None for unlabelled.
        modality: ``"image"``, ``"text"`` or ``"audio"`` to check against (or to disambiguate).
        on_error: what to do with unreadable files among ``X``: ``"fail"`` (the default, so that
            predictions stay aligned with ``X``) or ``"skip"`` (warn and leave them out).

    Returns:
        Samples whose origins are ``X[i]`` for in-memory items and the path for files.

    Raises:
        DataError: empty ``X``, items of different kinds (names the first offending index), an
            item that cannot be decoded, or ``y`` of the wrong length or with missing labels.

    Example:
        >>> samples_from_arrays(["good", "bad"], y=[1, 0]).labels
        ['1', '0']
    """
    check_modality(modality)
    items = _as_item_list(X, modality)
    if not items:
        raise DataError("X holds no items")
    labels = _labels(y, len(items))

    kinds = [_kind(item, i, modality) for i, item in enumerate(items)]
    found = kinds[0][0]
    for i, (kind, _) in enumerate(kinds):
        if kind != found:
            raise DataError(
                f"X[{i}] is {_describe(items[i])} but X[0] is {_describe(items[0])}; "
                "all items must be of one modality"
            )
    if modality is not None and modality != found:
        raise DataError(
            f"X holds {found} items (X[0] is {_describe(items[0])}), but modality {modality!r} was asked for"
        )

    origins = [f"X[{i}]" for i in range(len(items))]
    files = [i for i, (_, is_file) in enumerate(kinds) if is_file]
    for i, (_, is_file) in enumerate(kinds):
        if not is_file:
            _check_in_memory(items[i], found, origins[i])
            if found == "text" and not items[i].strip():
                raise DataError(f"{origins[i]} is an empty text")
            if found == "text":
                warn_if_media_path(items[i], origins[i])
    for i in files:
        items[i] = Path(items[i])
        origins[i] = str(items[i])
    log = SkipLog(on_error, "X")
    if files:
        readable = keep_readable([items[i] for i in files], [origins[i] for i in files], found, log)
        dropped = set(files) - {files[k] for k in readable}
        keep = [i for i in range(len(items)) if i not in dropped]
        log.summarise(len(files))
        if not keep:
            raise DataError("no readable files in X")
    else:
        keep = list(range(len(items)))
    return Samples(
        items=[items[i] for i in keep],
        labels=[labels[i] for i in keep] if labels is not None else None,
        modality=found,
        origins=[origins[i] for i in keep],
        skipped=log.skipped,
    )


def _as_item_list(X: Any, modality: str | None) -> list[Any]:
    """Split ``X`` into a list of items, reading batch arrays along their first axis."""
    if not isinstance(X, np.ndarray):
        if isinstance(X, str | bytes | os.PathLike | Image.Image) or not hasattr(X, "__len__"):
            raise DataError(f"X must be a list or array of items, not a single {type(X).__name__}")
        return list(X)
    if X.dtype.kind in "OUS":
        if X.ndim != 1:
            raise DataError(f"an array of strings or objects must be 1-D; got shape {X.shape}")
        return X.tolist()
    if X.ndim == 4:
        if X.shape[1] in (1, 3) and X.shape[3] not in (1, 3, 4):
            raise DataError(
                f"image batches must be channels-last (N, H, W, C); got {X.shape}, which looks "
                "channels-first: pass X.transpose(0, 2, 3, 1)"
            )
        return list(X)
    if X.ndim == 3:
        if modality == "audio":
            raise DataError(f"waveform batches must be (N, T); got {X.shape}")
        return list(X)
    if X.ndim == 2:
        if modality == "audio":
            return list(X)
        raise DataError(
            f"a 2-D array {X.shape} is ambiguous: pass modality='audio' for a batch of waveforms "
            "(N, T); images are (N, H, W[, C])"
        )
    raise DataError(f"X must be a batch of items; got an array of shape {X.shape}")


def _labels(y: Any, n: int) -> list[str] | None:
    if y is None:
        return None
    if isinstance(y, np.ndarray) and y.ndim != 1:
        raise DataError(f"y must hold one label per item (shape (N,)); got shape {y.shape}")
    if isinstance(y, str) or not hasattr(y, "__len__"):
        raise DataError(f"y must be a list or array of labels, not a single {type(y).__name__}")
    values = list(y)
    if len(values) != n:
        raise DataError(f"X has {n} items but y has {len(values)} labels")
    labels = []
    for i, value in enumerate(values):
        if (
            value is None
            or (isinstance(value, float | np.floating) and np.isnan(value))
            or (isinstance(value, str) and not value.strip())
        ):
            raise DataError(f"y[{i}] is missing")
        if isinstance(value, list | tuple | dict | np.ndarray):
            raise DataError(f"y[{i}] must be one label, not a {type(value).__name__}")
        labels.append(label_to_str(value))
    return labels


def _kind(item: Any, index: int, modality: str | None) -> tuple[str, bool]:
    """``(modality, is_file)`` of one item of X."""
    if isinstance(item, os.PathLike) or (isinstance(item, str) and modality in ("image", "audio")):
        kind = media_modality(item)
        if kind is None:
            raise DataError(
                f"X[{index}] ({str(item)!r}) is not a path to an image or audio file "
                f"(extensions {', '.join(sorted(IMAGE_EXTENSIONS | AUDIO_EXTENSIONS))})"
            )
        return kind, True
    if isinstance(item, str):
        kind = media_modality(item) if "\n" not in item else None
        return (kind, True) if kind is not None and modality != "text" else ("text", False)
    if isinstance(item, Image.Image):
        return "image", False
    if isinstance(item, np.ndarray):
        if item.ndim == 1:
            return "audio", False
        if item.ndim in (2, 3):
            return "image", False
        raise DataError(f"X[{index}] is an array of shape {item.shape}: neither an image nor a waveform")
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return "audio", False
    raise DataError(f"X[{index}] is a {type(item).__name__}: not a text, image, waveform or file path")


def _describe(item: Any) -> str:
    if isinstance(item, os.PathLike):
        return f"the file {item}"
    if isinstance(item, str):
        kind = media_modality(item)
        return f"the {kind} file {item!r}" if kind else "a text"
    if isinstance(item, Image.Image):
        return "a PIL image"
    if isinstance(item, np.ndarray):
        return f"an array of shape {item.shape}"
    return f"a {type(item).__name__}"


def _check_in_memory(item: Any, modality: str, origin: str) -> None:
    try:
        if modality == "image" and isinstance(item, np.ndarray):
            check_image_array(item)
        elif modality == "audio":
            check_waveform(item)
    except DataError as exc:
        raise DataError(f"{origin}: {exc}") from None
