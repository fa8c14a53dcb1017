"""Reading the inputs of a request: uploaded images and audio (multipart) and texts (JSON).

Every malformed payload becomes a ``PayloadError`` with an HTTP status (400, 413, 415, 422) and one
readable line naming what was wrong; nothing a client sends reaches the model undecoded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from transferkit.errors import DataError


class PayloadError(Exception):
    """A request the server refuses: an HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decode_image(data: bytes, name: str, _: int | None) -> Any:
    from PIL import Image, UnidentifiedImageError

    from transferkit.data import load_image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise PayloadError(400, f"{name}: not a readable image ({exc})") from None
    try:
        return load_image(image)
    except DataError as exc:
        raise PayloadError(400, f"{name}: {exc}") from None


def decode_audio(data: bytes, name: str, sample_rate: int | None) -> Any:
    import soundfile as sf

    from transferkit.data import load_audio

    try:
        waveform, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as exc:
        raise PayloadError(400, f"{name}: not a readable audio file ({exc})") from None
    if waveform.shape[0] == 0:
        raise PayloadError(400, f"{name}: the audio file holds no samples")
    if not np.isfinite(waveform).all():
        raise PayloadError(400, f"{name}: the audio holds NaN or infinite values")
    try:
        return load_audio((waveform.mean(axis=1), int(rate)), sample_rate=sample_rate or 16000)
    except DataError as exc:
        raise PayloadError(400, f"{name}: {exc}") from None


MEDIA_DECODERS: dict[str, Callable[[bytes, str, int | None], Any]] = {"image": decode_image, "audio": decode_audio}


async def read_inputs(request: Request, modality: str, *, batch: bool, max_batch: int,
                      sample_rate: int | None) -> tuple[list[Any], list[str]]:
    """The decoded items of a request and a name for each (the file name, or ``texts[i]``).

    ``/predict`` takes one input (a ``file`` upload, or ``{"text": ...}``), ``/predict/batch`` several
    (``files`` uploads, or ``{"texts": [...]}``).

    Raises:
        PayloadError: the wrong content type for the model (415), more than ``max_batch`` inputs (413),
            or a malformed upload or JSON body (400, 422).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if modality == "text":
        if kind != "application/json":
            shape = '{"texts": [...]}' if batch else '{"text": ...}'
            raise PayloadError(415, f"this model reads texts: send JSON ({shape}), not "
                               f"{kind or 'a body without a content type'}")
        return _read_texts(await request.body(), batch=batch, max_batch=max_batch)
    if kind != "multipart/form-data":
        raise PayloadError(415, f"this model reads {modality}: upload files as multipart/form-data (field "
                           f"{'files' if batch else 'file'}), not {kind or 'a body without a content type'}")
    field = "files" if batch else "file"
    try:
        form = await request.form(max_files=max_batch + 1, max_fields=max_batch + 1)
    except Exception as exc:  # noqa: BLE001 - starlette's multipart errors have no public common base
        status = 413 if "too many" in str(exc).lower() else 400
        raise PayloadError(status, f"malformed multipart body: {exc}") from None
    uploads = [value for value in form.getlist(field) if isinstance(value, UploadFile)]
    if not uploads:
        raise PayloadError(422, f"no file in the form field {field!r}")
    if len(uploads) > (max_batch if batch else 1):
        raise PayloadError(413, f"{len(uploads)} files; at most {max_batch if batch else 1} per request")
    decode = MEDIA_DECODERS[modality]
    items, names = [], []
    for index, upload in enumerate(uploads):
        name = upload.filename or f"{field}[{index}]"
        items.append(decode(await upload.read(), name, sample_rate))
        names.append(name)
    return items, names


def _read_texts(body: bytes, *, batch: bool, max_batch: int) -> tuple[list[Any], list[str]]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PayloadError(400, f"the body is not valid JSON: {exc}") from None
    key = "texts" if batch else "text"
    if not isinstance(payload, dict) or key not in payload:
        raise PayloadError(422, f"expected a JSON object with {key!r}")
    texts = payload[key] if batch else [payload[key]]
    if not isinstance(texts, list) or not texts:
        raise PayloadError(422, f"{key!r} must be a non-empty list of strings")
    if len(texts) > max_batch:
        raise PayloadError(413, f"{len(texts)} texts; at most {max_batch} per request")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise PayloadError(422, f"{key}[{index}] must be a non-empty string" if batch
                               else "'text' must be a non-empty string")
    return texts, [f"texts[{i}]" for i in range(len(texts))] if batch else ["text"]
