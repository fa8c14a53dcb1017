"""``adapt``: domain adaptation from labelled source data to unlabelled target data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from transferkit.cli.options import (
    BackboneOpt,
    BatchSizeOpt,
    Checkpointing,
    InputSize,
    ModalityOpt,
    PrecisionOpt,
    Reading,
    SeedOpt,
    short_warnings,
)
from transferkit.cli.recording import Tracking
from transferkit.errors import ConfigError
from transferkit.params import option_range


def adapt(
    source: Annotated[Path, typer.Option(help="labelled source data (folder, table, .review folder)")],
    target: Annotated[Path, typer.Option(help="target-domain data; read WITHOUT labels")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (adapt.json, predictions.csv, "
                                                          "embedding.png, report.html, model/ run directory)")],
    method: Annotated[str | None, typer.Option(help="adaptation method (see `transferkit list adaptation-method`); "
                                                    "default: chosen without target labels (see --budget)")] = None,
    budget: Annotated[str | None, typer.Option(help="without --method: time the adaptation may take (90s, 10m, "
                                                    "1h); the backbone is trained only when source-only looks "
                                                    "hopeless and the estimate fits")] = None,
    target_eval: Annotated[Path | None, typer.Option(help="labelled target data, used ONLY for the report "
                                                          "(accuracy before/after, oracle choice)")] = None,
    backbone: BackboneOpt = "",
    selection: Annotated[str, typer.Option(help="label-free hyperparameter selection: dev, iwv, snd, source_val")]
    = "dev",
    param: Annotated[list[str] | None, typer.Option(help="fix a method hyperparameter, KEY=VALUE (repeatable); "
                                                         "the rest of the grid is searched")] = None,
    epochs: Annotated[int | None, typer.Option(help="deep methods: training epochs", **option_range("epochs"))] = None,
    lr: Annotated[float | None, typer.Option(help="deep methods: learning rate", **option_range("lr"))] = None,
    batch_size: BatchSizeOpt = 32,
    mixed_precision: PrecisionOpt = "no",
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    *,
    size: InputSize,
    reading: Reading,
    checkpointing: Checkpointing,
    tracking: Tracking,
) -> None:
    """Adapt a classifier from labelled SOURCE data to unlabelled TARGET data.

    Feature-level methods (coral, subspace_alignment, entropic_ot, cbst, ...) work on the backbone's
    cached features; their hyperparameters are chosen WITHOUT target labels (--selection). Labels in
    --target-eval only feed the report, where the oracle choice is shown beside the label-free one.

    Deep methods (dann, cdan, self_training, shot, ...) train the backbone and keep checkpoints in
    OUT.checkpoints/ next to OUT until OUT is written; after a crash or a kill, the same command with
    --resume continues from the last one (finished stages are not trained again) and ends as an
    uninterrupted run would.

    Without --method, adapt fits source-only on the frozen features and reads label-free signs (target
    prediction entropy against held-out source, class collapse, SND): when they say the frozen features
    do not carry and --budget holds the estimated cost, it trains the backbone (mcc); otherwise it aligns
    the features (cbst). OUT/choices.json says why.
    """
    from transferkit.adapt.api import adapt as run_adapt
    from transferkit.cli.settings import method_params

    short_warnings()
    checkpoints = checkpointing.folder(out)
    deep: dict[str, Any] = {key: value for key, value in (("epochs", epochs), ("lr", lr)) if value is not None}
    deep.update(checkpoint_dir=str(checkpoints), checkpoint_every=checkpointing.checkpoint_every,
                resume=checkpointing.resume, mixed_precision=mixed_precision)
    fixed = method_params({}, param, ["method"], default="method").get("method", {})  # KEY or method.KEY
    from transferkit.auto.budget import parse_budget

    seconds = parse_budget(budget)
    if method is not None and seconds is not None:
        raise ConfigError(f"--budget {budget} is for the automatic choice; --method {method} was given")
    summary = run_adapt(source, target, method=method, backbone=backbone, out=out, target_eval=target_eval,
                        budget=seconds,
                        selection=selection, params=fixed, seed=seed, batch_size=batch_size,
                        backbone_options=size.backbone_options(), deep_options=deep, modality=modality,
                        overwrite=checkpointing.overwrite, log=lambda line: typer.echo(line, err=True),
                        **reading.read_options())
    method = summary["method"]
    if "selection" in summary:
        typer.echo(f"{method}: chose {json.dumps(summary['selection']['params'])} by {selection} (no target labels)")
    for label, row in summary.get("accuracy", {}).items():
        source_part = f"held-out source {row['source_val']:.4f}   " if "source_val" in row else ""
        typer.echo(f"{label:<52} {source_part}target {row['target']:.4f}")
    tracking.log("adapt", params={"source": str(source), "target": str(target), "method": method,
                                  "backbone": summary.get("backbone"), "selection": selection, "seed": seed,
                                  **{f"param.{k}": v for k, v in fixed.items()}, **deep},
                 metrics={"seconds": summary["seconds"], "accuracy": summary.get("accuracy")},
                 history=summary.get("history") or (), folder=out)
    typer.echo(f"adapted in {summary['seconds']:.1f}s; wrote {out}")
    typer.echo(f"the adapted model: transferkit predict {out / 'model'} INPUTS...")
