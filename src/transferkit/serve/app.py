"""The HTTP service of ``transferkit serve``: one loaded engine behind FastAPI.

Endpoints: ``POST /predict`` (one input), ``POST /predict/batch`` (several), ``GET /health``,
``GET /metadata`` (task, labels, backbone, limits) and FastAPI's OpenAPI description
(``/openapi.json``, ``/docs``). Requests are micro-batched (``batching.MicroBatcher``). With an API
key, every endpoint but ``/health`` and the description answers 401 without it. Bodies over the limit
get 413 before they are read whole, malformed payloads a 4xx naming the problem (``payloads``); an
unexpected failure is a 500 for that request only, never the end of the process.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transferkit._version import __version__
from transferkit.data import Samples
from transferkit.errors import TransferkitError
from transferkit.export.engine import Engine
from transferkit.serve.batching import MicroBatcher
from transferkit.serve.payloads import PayloadError, read_inputs

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ServeSettings:
    """Limits and access of the service.

    Attributes:
        api_key: required in the ``X-API-Key`` header when set.
        max_batch: most inputs per request, and per micro-batch.
        max_body_bytes: largest request body.
        max_wait_s: how long the first request of a micro-batch waits for others.
    """

    api_key: str | None = None
    max_batch: int = 64
    max_body_bytes: int = 16_000_000
    max_wait_s: float = 0.005


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or, without one, as soon as
    the streamed body passes it; smaller bodies are handed on whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body over the limit of {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``engine`` (run it with uvicorn, or test it with FastAPI's TestClient
    used as a context manager, which starts the micro-batcher)."""
    settings = settings or ServeSettings()
    modality = engine.modality

    def predict(items: list[Any]) -> list[dict[str, Any]]:
        samples = Samples(items=list(items), labels=None, modality=modality,
                          origins=[f"request item {i}" for i in range(len(items))])
        return [engine.task.record(scores, top_k=len(engine.task.names))
                for scores in engine.predict_scores(samples, batch_size=settings.max_batch)]

    batcher = MicroBatcher(predict, max_batch=settings.max_batch, max_wait_s=settings.max_wait_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="transferkit", version=__version__, lifespan=lifespan,
                  description=f"{engine.task.name} with {engine.manifest['backbone']['name']} ({modality}), "
                              f"on {engine.name}")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    def require_key(given: str | None = Depends(key_header)) -> None:
        if settings.api_key is not None and not (
                given and secrets.compare_digest(given.encode(), settings.api_key.encode())):
            raise PayloadError(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")

    @app.exception_handler(PayloadError)
    async def refused(_: Request, exc: PayloadError) -> JSONResponse:
        headers = {"WWW-Authenticate": "APIKey"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(TransferkitError)
    async def unusable(_: Request, exc: TransferkitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    top_k_query = Query(3, ge=1, le=1000, description="probabilities shown per input")
    body_doc = _request_body(modality)

    async def answer(request: Request, top_k: int, *, batch: bool) -> list[dict[str, Any]]:
        items, names = await read_inputs(request, modality, batch=batch, max_batch=settings.max_batch,
                                         sample_rate=engine.backbone.sample_rate)
        records = await batcher.submit(items)
        return [{"input": name, **_top(record, top_k)} for name, record in zip(names, records, strict=True)]

    @app.post("/predict", dependencies=[Depends(require_key)], openapi_extra=body_doc(batch=False),
              summary="predict for one input")
    async def predict_one(request: Request, top_k: int = top_k_query) -> dict[str, Any]:
        return (await answer(request, top_k, batch=False))[0]

    @app.post("/predict/batch", dependencies=[Depends(require_key)], openapi_extra=body_doc(batch=True),
              summary="predict for several inputs")
    async def predict_batch(request: Request, top_k: int = top_k_query) -> dict[str, Any]:
        return {"predictions": await answer(request, top_k, batch=True)}

    @app.get("/health", summary="the service is up and its model loaded")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metadata", dependencies=[Depends(require_key)], summary="what the model predicts")
    async def metadata() -> dict[str, Any]:
        manifest = engine.manifest
        return {"task": engine.task.name, "labels": engine.task.names, "modality": modality,
                "backbone": manifest["backbone"], "engine": engine.name, "strategy": manifest.get("strategy"),
                "transferkit_version": __version__, "sample_rate": engine.backbone.sample_rate,
                "limits": {"max_batch": settings.max_batch, "max_body_bytes": settings.max_body_bytes,
                           "max_wait_ms": settings.max_wait_s * 1000}, "batches_run": batcher.batches}

    return app


def _top(record: dict[str, Any], top_k: int) -> dict[str, Any]:
    """A record with only its ``top_k`` most probable classes (records of other tasks unchanged)."""
    shown = record.get("probabilities")
    if not isinstance(shown, dict):
        return record
    return {**record, "probabilities": dict(list(shown.items())[:top_k])}


def _request_body(modality: str) -> Any:
    """The OpenAPI request body of the predict endpoints: JSON texts, or multipart file uploads."""

    def body(*, batch: bool) -> dict[str, Any]:
        if modality == "text":
            schema = ({"type": "object", "required": ["texts"],
                       "properties": {"texts": {"type": "array", "items": {"type": "string"}}}} if batch else
                      {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}})
            content = {"application/json": {"schema": schema}}
        else:
            file = {"type": "string", "format": "binary"}
            field = "files" if batch else "file"
            schema = {"type": "object", "required": [field],
                      "properties": {field: {"type": "array", "items": file} if batch else file}}
            content = {"multipart/form-data": {"schema": schema}}
        return {"requestBody": {"required": True, "content": content}}

    return body
