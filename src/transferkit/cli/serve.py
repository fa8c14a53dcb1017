"""``export`` (a run as ONNX) and ``serve`` (a run behind an HTTP API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from transferkit.cli.options import JsonOpt, Reading, RunArg, short_warnings

EngineOpt = Annotated[str, typer.Option(help="what runs the model: torch (the run directory), onnx or onnx-int8 "
                                             "(its export, `transferkit export`)")]


def export(
    run: RunArg,
    format: Annotated[str, typer.Option("--format", help="export format: onnx")] = "onnx",  # noqa: A002
    out: Annotated[Path | None, typer.Option("--out", "-o", help="export folder (default RUN/onnx)")] = None,
    quantize: Annotated[bool, typer.Option(help="also write int8 dynamic quantisation (model.int8.onnx)")] = False,
    check: Annotated[Path | None, typer.Option(help="labelled data to evaluate the exported models on, next to "
                                                    "PyTorch (the accuracy cost of --quantize)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing export")] = False,
    as_json: JsonOpt = False,
    *,
    reading: Reading,
) -> None:
    """Export RUN's backbone and head as one ONNX model with dynamic batch and sequence axes (a LoRA
    adapter merged), beside its preprocessing description, tokenizer and label map.

    The ONNX outputs are checked against PyTorch's on example inputs; export.json records the largest
    difference (and, with --check DATA, each engine's metrics on DATA)."""
    from transferkit.cli.run import _read
    from transferkit.errors import ConfigError
    from transferkit.export.onnx import FORMATS, export_onnx
    from transferkit.export.tasks import exportable
    from transferkit.tasks import task_from_manifest

    short_warnings()
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    samples = None
    if check is not None:
        from transferkit.artifact import read_manifest

        manifest = read_manifest(run)
        task = task_from_manifest(manifest)
        exportable(task.name)  # an unexportable task fails before the data are read
        samples = _read(check, task.name, reading, manifest["modality"])
    report = export_onnx(run, out, quantize=quantize, overwrite=overwrite, check=samples)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    where = out or run / "onnx"
    int8 = report.get("int8_max_abs_diff_outputs")
    int8_note = "other numbers of boxes" if int8 is None else f"{int8:.2e}"
    typer.echo(f"wrote {where} (largest difference of the outputs from PyTorch: {report['max_abs_diff_outputs']:.2e}"
               + (f"; int8: {int8_note}" if quantize else "") + ")")
    for engine, metrics in report.get("check", {}).items():
        typer.echo(f"{engine}: {json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float)})}")



def serve(
    run: RunArg,
    host: Annotated[str, typer.Option(help="address to bind (localhost only by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port", min=0, max=65535)] = 8000,
    api_key: Annotated[str | None, typer.Option(help="require this key in the X-API-Key header",
                                                envvar="TRANSFERKIT_API_KEY")] = None,
    engine: EngineOpt = "torch",
    max_batch: Annotated[int, typer.Option(help="most inputs per request and per micro-batch", min=1,
                                           max=4096)] = 64,
    max_body_mb: Annotated[float, typer.Option(help="largest request body in MB", min=0.001, max=4096)] = 16.0,
    max_wait_ms: Annotated[float, typer.Option(help="how long a request waits for others to batch with",
                                               min=0, max=1000)] = 5.0,
) -> None:
    """Serve RUN over HTTP (FastAPI + uvicorn): POST /predict, POST /predict/batch, GET /health,
    GET /metadata, and the OpenAPI description at /docs and /openapi.json.

    The model is loaded once; concurrent requests are batched together. Images and audio are sent
    as multipart file uploads, texts as JSON ({"text": ...} or {"texts": [...]})."""
    import uvicorn

    from transferkit.export import load_engine
    from transferkit.serve import ServeSettings, create_app

    short_warnings()
    loaded = load_engine(run, engine)
    settings = ServeSettings(api_key=api_key, max_batch=max_batch, max_body_bytes=int(max_body_mb * 1e6),
                             max_wait_s=max_wait_ms / 1000)
    app = create_app(loaded, settings)
    typer.echo(f"serving {run} ({loaded.task.name}, {engine}) on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
