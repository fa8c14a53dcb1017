"""Decoding raw items into what backbones take: RGB PIL images and float32 mono waveforms.

Every decoder turns a bad file into a DataError that names the file, so a corrupt JPEG or a
truncated WAV is reported once, clearly, when the data is read rather than in the middle of
training. ``item_digest`` gives a content hash per item for feature caching.
"""

import contextlib
import hashlib
import json
import os
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.signal import resample_poly

from transferkit.data.samples import SkipLog, media_modality
from transferkit.data.tagged import Sentence
from transferkit.errors import DataError

DEFAULT_SAMPLE_RATE = 16000
# A longer side more than this many times the shorter one is refused: resizing the shorter side to
# the model's input would blow a 1x120000 strip up to billions of pixels.
MAX_ASPECT_RATIO = 50
# Images over Pillow's decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, about 89 megapixels) are
# decoded reduced, to at most this many pixels on the longer side, with a warning naming the file.
LARGE_IMAGE_SIDE = 4096


class LargeImageWarning(UserWarning):
    """An image over Pillow's size threshold was decoded reduced."""


def load_image(item: Any) -> Image.Image:
    """Decode one image item to an RGB PIL image.

    Args:
        item: a file path (``Path`` or ``str``), a PIL image, or an array ``(H, W)``,
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped) of ``uint8`` or of floats
            in ``[0, 1]``.

    Returns:
        An RGB image. Files are turned upright by their EXIF orientation, as a photo viewer
        shows them. High-bit-depth files are scaled to 8 bits: 16-bit images (PNG, TIFF) by their
        bit depth (``value * 255 / 65535``); float images holding values in ``[0, 1]`` by 255; other
        32-bit integer or float images (TIFF) by their own value range (minimum to 0, maximum
        to 255), since nothing fixes their scale.
        Images over Pillow's size threshold are decoded reduced (longer side at most
        ``LARGE_IMAGE_SIDE``) with a warning naming the file.

    Raises:
        DataError: a missing, unreadable, corrupt or truncated file (named), a side more than
            ``MAX_ASPECT_RATIO`` times the other, or an array of the wrong shape or value range.

    Example:
        >>> load_image(np.zeros((8, 8), dtype=np.uint8)).size
        (8, 8)
    """
    if isinstance(item, Image.Image):
        _check_aspect_ratio(item.size, "image")
        return _to_rgb(item, "image")
    if isinstance(item, str | os.PathLike):
        with _open_image(Path(item)) as image:
            upright = image
            with contextlib.suppress(Exception):  # a broken EXIF block should not lose the image
                upright = ImageOps.exif_transpose(image)
            # older Pillows decode a 16-bit PNG to the 32-bit mode "I"; its depth is still 16 bits
            return _to_rgb(upright, str(item), sixteen_bit=image.format == "PNG")
    if isinstance(item, np.ndarray):
        image = Image.fromarray(_image_array_to_uint8(item))
        _check_aspect_ratio(image.size, f"image array of shape {item.shape}")
        return image.convert("RGB")
    raise DataError(f"cannot read an image from a {type(item).__name__}")


def check_image_file(path: Path) -> None:
    """Fully decode an image file, raising DataError naming it if it is unreadable.

    High-bit-depth pixels are also scaled here, so that a float image holding NaN is refused when
    the data is read (and skipped under ``on_error="skip"``), not in the middle of a fit.
    """
    with _open_image(path) as image:
        if image.mode in _SIXTEEN_BIT_MODES | {"I", "F"}:
            _to_rgb(image, str(path), sixteen_bit=image.format == "PNG")


def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image file, so that truncation surfaces here.

    The size is checked from the header before any pixel is decoded; large images are decoded
    reduced (JPEG's draft mode, then ``reduce``).
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow's own warning does not name the file; ours below does
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        _check_aspect_ratio(image.size, str(path))
        large = Image.MAX_IMAGE_PIXELS is not None and image.width * image.height > Image.MAX_IMAGE_PIXELS
        if large:
            warnings.warn(f"{path}: large image ({image.width}x{image.height}, over "
                          f"{Image.MAX_IMAGE_PIXELS} pixels); decoded reduced to at most "
                          f"{LARGE_IMAGE_SIDE} pixels a side", LargeImageWarning, stacklevel=2)
            image.draft(image.mode, (LARGE_IMAGE_SIDE, LARGE_IMAGE_SIDE))
        image.load()
        if large and max(image.size) > LARGE_IMAGE_SIDE:
            image = image.reduce(-(-max(image.size) // LARGE_IMAGE_SIDE))
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image file") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from None
    if image.width == 0 or image.height == 0:
        raise DataError(f"{path}: empty image ({image.width}x{image.height})")
    return image


def _check_aspect_ratio(size: tuple[int, int], name: str) -> None:
    width, height = size
    if min(width, height) > 0 and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise DataError(f"{name}: extreme aspect ratio ({width}x{height}, more than {MAX_ASPECT_RATIO}:1); "
                        "crop or pad it first")


# Pillow modes holding more than 8 bits per pixel: what ``convert("RGB")`` would clip to 0 or 255.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _to_rgb(image: Image.Image, name: str, *, sixteen_bit: bool = False) -> Image.Image:
    """An RGB image; high-bit-depth greyscale scaled to 8 bits as ``load_image`` documents.

    Args:
        sixteen_bit: the source holds at most 16 bits per pixel whatever its Pillow mode.
    """
    if image.mode not in _SIXTEEN_BIT_MODES | {"I", "F"}:
        return image.convert("RGB")
    values = np.asarray(image).astype(np.float64)  # (H, W)
    if not np.isfinite(values).all():
        raise DataError(f"{name}: image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and sixteen_bit):
        scaled = values * (255 / 65535)
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255
    else:  # no fixed range to scale by: stretch the image's own range
        scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def check_image_array(array: np.ndarray) -> None:
    """Raise DataError unless ``array`` is one image ``(H, W[, C])`` that ``load_image`` takes."""
    _image_array_to_uint8(array)


def _image_array_to_uint8(array: np.ndarray) -> np.ndarray:
    """An image array as ``uint8`` ``(H, W)`` or ``(H, W, 3|4)``, checking shape and range."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise DataError(
            f"image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"empty image array of shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise DataError("image array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise DataError(
                f"float image arrays must hold values in [0, 1]; got [{low:g}, {high:g}] "
                "(divide by 255, or pass uint8)"
            )
        return np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DataError(f"integer image arrays must hold values in [0, 255]; got [{low}, {high}]")
        return array.astype(np.uint8)
    raise DataError(f"unsupported image array dtype {array.dtype}")


def load_audio(item: Any, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Decode one audio item to a float32 mono waveform at ``sample_rate``.

    Args:
        item: a file path (WAV, FLAC, OGG, MP3: whatever soundfile reads), a 1-D array taken to be
            at ``sample_rate`` already, or a ``(waveform, sample_rate)`` tuple. Integer PCM arrays
            are scaled to ``[-1, 1]``.
        sample_rate: the rate the backbone expects; other rates are resampled (polyphase).

    Returns:
        Shape ``(T,)``, float32. Multi-channel files are averaged to mono.

    Raises:
        DataError: a missing, unreadable, truncated or empty file (named), or an array that is not
            a finite, non-empty 1-D waveform.

    Example:
        >>> load_audio((np.zeros(8000, dtype=np.float32), 8000)).shape
        (16000,)
    """
    if isinstance(item, str | os.PathLike):
        waveform, rate = _read_audio_file(Path(item))
    else:
        waveform, rate = _waveform_and_rate(item, sample_rate)
    return _resample(waveform, rate, sample_rate)


def check_waveform(item: Any) -> None:
    """Raise DataError unless ``item`` is a waveform array or a ``(waveform, rate)`` tuple."""
    _waveform_and_rate(item, DEFAULT_SAMPLE_RATE)


def _waveform_and_rate(item: Any, default_rate: int) -> tuple[np.ndarray, int]:
    if isinstance(item, tuple) and len(item) == 2:
        rate = item[1]
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise DataError(f"sample rate must be a positive integer, not {rate!r}")
        return _waveform_array(item[0]), int(rate)
    if isinstance(item, np.ndarray):
        return _waveform_array(item), default_rate
    raise DataError(f"cannot read audio from a {type(item).__name__}")


def check_audio_file(path: Path) -> None:
    """Fully decode an audio file, raising DataError naming it if it is unreadable."""
    _read_audio_file(path)


def _read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".wav":
        check_wav_complete(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable audio file ({exc})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file holds no samples")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio contains NaN or infinite values")
    return data.mean(axis=1), int(rate)


def check_wav_complete(path: Path) -> None:
    """Raise DataError if a RIFF/WAVE file holds fewer audio bytes than its header declares.

    libsndfile quietly reads a truncated WAV up to where the bytes stop, so a half-copied file
    would otherwise train as a shorter clip. Streams written with an unknown length (data size 0
    or ``0xFFFFFFFF``) and RF64 files are not checked.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # not RIFF/WAVE (RF64, or not a WAV at all): libsndfile reports what it is
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            body = offset + 8
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return
                if body + chunk_size > size:
                    raise DataError(
                        f"{path}: truncated WAV file: header declares {chunk_size} bytes of audio, "
                        f"the file holds {size - body}"
                    )
                return
            offset = body + chunk_size + (chunk_size & 1)
    raise DataError(f"{path}: truncated WAV file: no audio data chunk")


def _waveform_array(array: Any) -> np.ndarray:
    """A waveform array as finite float32 ``(T,)``, with integer PCM scaled to ``[-1, 1]``."""
    if not isinstance(array, np.ndarray):
        raise DataError(f"a waveform must be a numpy array, not a {type(array).__name__}")
    if array.ndim != 1:
        raise DataError(
            f"waveform arrays must be 1-D (mono); got shape {array.shape} (average the channels first)"
        )
    if array.size == 0:
        raise DataError("empty waveform")
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min == 0:  # unsigned PCM is offset by half its range
            return ((array.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)).astype(np.float32)
        return (array.astype(np.float64) / -float(info.min)).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"unsupported waveform dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise DataError("waveform contains NaN or infinite values")
    return array.astype(np.float32, copy=False)


def _resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate != target:
        g = gcd(rate, target)
        waveform = resample_poly(waveform, target // g, rate // g)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def check_media_file(path: Path, modality: str) -> None:
    """Fully decode ``path`` as an ``"image"`` or ``"audio"`` file, raising DataError if it fails."""
    if modality == "image":
        check_image_file(path)
    elif modality == "audio":
        check_audio_file(path)
    else:
        raise DataError(f"{path}: {modality} is not a file modality")


def keep_readable(paths: Sequence[Path], origins: Sequence[str], modality: str, log: SkipLog) -> list[int]:
    """Decode every file once and return the indices of those that read.

    Unreadable files go to ``log`` (warn and skip, or raise). Decoding runs in a few threads
    (PIL and libsndfile release the GIL); the result and the warnings keep the input order.
    """

    def problem(path: Path) -> str | None:
        if media_modality(path) != modality:
            return f"not an {modality} file (extension {path.suffix or 'missing'!r})"
        try:
            check_media_file(path, modality)
        except DataError as exc:
            return str(exc).removeprefix(f"{path}: ")
        return None

    workers = min(8, os.cpu_count() or 1, max(1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(problem, paths))
    kept = []
    for i, reason in enumerate(problems):
        if reason is None:
            kept.append(i)
        else:
            log.bad(origins[i], reason)
    return kept


def item_digest(item: Any) -> str:
    """A content hash of one raw item, to key cached features.

    Files hash their bytes (not their name, so a moved file keeps its cache entry); a ``str``
    hashes as text (pass a ``Path`` for a file); arrays hash bytes, shape and dtype; PIL images
    hash pixels, size and mode; ``(waveform, rate)`` tuples hash both.

    Raises:
        DataError: a missing file, or an item of an unsupported type.
    """
    h = hashlib.sha256()
    _update_digest(h, item)
    return h.hexdigest()


def samples_fingerprint(items: Sequence[Any], targets: Any = None) -> str:
    """A digest of a data set's contents, to tell whether a checkpoint was written on the same data.

    Cheaper than hashing every ``item_digest``: files count by path, size and modification time
    (not their bytes); texts, arrays, images and waveforms by content; ``targets`` (labels or encoded
    targets) by value.
    """
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, os.PathLike):
            try:
                stat = os.stat(item)
                h.update(f"file\0{os.fspath(item)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            except OSError:
                h.update(f"file\0{os.fspath(item)}\0missing\0".encode())
        else:
            _update_digest(h, item)
    if targets is not None:
        h.update(json.dumps(np.asarray(targets).tolist(), default=str).encode())
    return h.hexdigest()


def _update_digest(h: Any, item: Any) -> None:
    if isinstance(item, str):
        h.update(b"text\0" + item.encode("utf-8", "surrogatepass"))
    elif isinstance(item, os.PathLike):
        h.update(b"file\0")
        try:
            with open(item, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise DataError(f"{item}: cannot read file ({exc.strerror})") from None
    elif isinstance(item, np.ndarray):
        h.update(f"array\0{item.shape}\0{item.dtype.str}\0".encode())
        h.update(np.ascontiguousarray(item).tobytes())
    elif isinstance(item, Image.Image):
        h.update(f"pil\0{item.size}\0{item.mode}\0".encode())
        h.update(item.tobytes())
    elif isinstance(item, tuple) and len(item) == 2:
        h.update(f"pair\0{item[1]!r}\0".encode())
        _update_digest(h, item[0])
    elif isinstance(item, Sentence):  # a tagged sentence: its text and its words' spans
        h.update(f"sentence\0{item.spans}\0".encode())
        _update_digest(h, item.text)
    else:
        raise DataError(f"cannot hash an item of type {type(item).__name__}")
