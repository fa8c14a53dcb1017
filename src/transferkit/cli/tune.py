"""``tune``: a hyperparameter search whose best configuration ``fit --config`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.cli.options import (
    BackboneOpt,
    BatchSizeOpt,
    DataArg,
    InputSize,
    JsonOpt,
    ModalityOpt,
    Reading,
    SeedOpt,
    short_warnings,
    split_list,
)
from transferkit.params import option_range


def tune(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="TOML file for the best configuration "
                                                          "(`transferkit fit DATA --config OUT`)")],
    trials: Annotated[int, typer.Option(help="trials in all; a continued search counts its finished ones",
                                        **option_range("trials"))] = 20,
    timeout: Annotated[float | None, typer.Option(help="start no trial after this many seconds",
                                                  **option_range("timeout"))] = None,
    storage: Annotated[Path | None, typer.Option(help="the study's SQLite file (default: OUT with .db); the same "
                                                      "command continues an interrupted search from it")] = None,
    backbone: BackboneOpt = "",
    strategies: Annotated[str, typer.Option(help="comma-separated strategies the trials choose from")]
    = "linear_probe,lp_ft,finetune",
    max_epochs: Annotated[int, typer.Option(help="most epochs of a fine-tuning trial", **option_range("epochs"))] = 5,
    val_fraction: Annotated[float, typer.Option(help="share of DATA the trials are scored on",
                                                **option_range("val_fraction"))] = 0.2,
    batch_size: BatchSizeOpt = 32,
    task: Annotated[str, typer.Option(help="classification, multilabel or regression")] = "classification",
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    *,
    size: InputSize,
    reading: Reading,
) -> None:
    """Search the strategy, learning rate, layer decay, epochs and regulariser strength with Optuna.

    Trials train on a split of DATA and are scored on the rest (validation data, never an evaluation
    set); fine-tuning trials that trail the others after an epoch are pruned. Linear-probe trials
    reuse the cached features. The best configuration goes to OUT as TOML: `transferkit fit DATA
    --config OUT --out RUN` fits it on all of DATA. Interrupted, the same command continues the search
    from --storage.
    """
    from transferkit.auto.tune import TuneConfig
    from transferkit.auto.tune import tune as run_tune
    from transferkit.safety import check_output

    short_warnings()
    check_output(out, what="configuration file", inputs=(data,))
    config = TuneConfig(trials=trials, timeout=timeout, strategies=tuple(split_list(strategies)),
                        max_epochs=max_epochs, val_fraction=val_fraction, batch_size=batch_size, seed=seed)
    samples = reading.read(data, modality)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    where = storage or out.with_suffix(".db")
    typer.echo(f"tuning {name} on {len(samples)} {samples.modality} samples, {trials} trials; study in {where}",
               err=True)
    result = run_tune(samples, task=task, backbone=name, storage=where, config=config,
                      backbone_options=size.backbone_options())
    result.write(out)
    if as_json:
        typer.echo(json.dumps({"best_score": result.best_score, "options": result.options, "params": result.params,
                               "trials": result.trials, "seconds": result.seconds}, indent=2, default=str))
        return
    for row in result.trials:
        score = "-" if row["score"] is None else f"{row['score']:.4f}"
        typer.echo(f"{row['number']:>3}  {row['state']:<8} {score:>7}  {row['params']}")
    typer.echo(f"best validation {result.score_name} {result.best_score:.4f}: {result.options['strategy']}; "
               f"wrote {out} ({result.seconds:.0f}s)")
