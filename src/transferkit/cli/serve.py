"""``export``: a run as ONNX."""

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
    typer.echo(f"wrote {where} (largest difference of the outputs from PyTorch: {report['max_abs_diff_outputs']:.2e}"
               + (f"; int8: {report['int8_max_abs_diff_outputs']:.2e}" if quantize else "") + ")")
    for engine, metrics in report.get("check", {}).items():
        typer.echo(f"{engine}: {json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float)})}")

