"""``transferkit serve``: a fitted run behind an HTTP API (FastAPI + uvicorn), micro-batched."""

from transferkit.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
