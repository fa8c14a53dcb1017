"""``curve``: the score against the number of labels, transfer against from scratch, on the user's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transferkit.cli.options import (
    BackboneOpt,
    BatchSizeOpt,
    DataArg,
    InputSize,
    ModalityOpt,
    OverwriteOpt,
    Reading,
    SeedOpt,
    refuse_existing,
    short_warnings,
)
from transferkit.cli.recording import Tracking
from transferkit.params import option_range


def curve(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for curve.json, curve.png and report.html")],
    fractions: Annotated[str, typer.Option(help="comma-separated shares of the training data, each in (0, 1]")]
    = "0.01,0.05,0.2,1",
    test: Annotated[Path | None, typer.Option(help="labelled evaluation data (default: --test-fraction of DATA, "
                                                   "held out once)")] = None,
    test_fraction: Annotated[float, typer.Option(help="share of DATA held out for evaluation without --test",
                                                 **option_range("val_fraction"))] = 0.2,
    backbone: BackboneOpt = "",
    strategy: Annotated[str, typer.Option(help="the transfer recipe's strategy (on pretrained weights)")]
    = "linear_probe",
    epochs: Annotated[int | None, typer.Option(help="the transfer recipe's epochs (fine-tuning strategies)",
                                               **option_range("epochs"))] = None,
    scratch_epochs: Annotated[int, typer.Option(help="epochs of the from-scratch fine-tune",
                                                **option_range("epochs"))] = 10,
    scratch_lr: Annotated[float, typer.Option(help="learning rate of the from-scratch fine-tune",
                                              **option_range("lr"))] = 1e-3,
    batch_size: BatchSizeOpt = 32,
    task: Annotated[str | None, typer.Option(help="the task (default: classification)")] = None,
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    *,
    size: InputSize,
    reading: Reading,
    tracking: Tracking,
) -> None:
    """Plot the score against the number of labelled samples: the same backbone with its pretrained
    weights (--strategy, the linear probe by default) and from random weights (a full fine-tune), on
    subsets of DATA, each scored on the same held-out data.

    It shows on your data how many labels transfer saves. Nothing is chosen on the held-out data.
    """
    from transferkit.backbones.zoo import DEFAULT_BACKBONE
    from transferkit.curve import check_fractions, default_recipes, label_curve, parse_fractions, write_curve
    from transferkit.tasks import make_task

    short_warnings()
    chosen = check_fractions(parse_fractions(fractions))
    refuse_existing(out, overwrite, inputs=(data, test))
    samples = reading.read(data, modality)
    if test is not None:
        train, held_out = samples, reading.read(test, samples.modality)
    else:
        train_idx, test_idx = make_task(task or "classification").split(samples.labels or [], test_fraction, seed)
        train, held_out = samples.subset(train_idx), samples.subset(test_idx)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"label curve of {name} on {len(train)} {samples.modality} samples, scored on {len(held_out)}",
               err=True)
    recipes = default_recipes(scratch_epochs, scratch_lr, strategy, epochs)
    result = label_curve(train, held_out, fractions=chosen, backbone=name, recipes=recipes, task=task, seed=seed,
                         batch_size=batch_size, backbone_options=size.backbone_options(),
                         log=lambda line: typer.echo(line, err=True))
    write_curve(out, result, overwrite=overwrite)
    for recipe, series in result.series().items():
        typer.echo(f"{recipe:<28} " + "  ".join(f"{n}: {score:.4f}" for n, score in series))
    tracking.log("curve", params={"data": str(data), "backbone": name, "fractions": fractions,
                                   "strategy": strategy, "scratch_epochs": scratch_epochs, "seed": seed},
                  metrics={f"{p.recipe.split(' ')[0]}.n{p.n_labels}": p.score for p in result.points}, folder=out)
    typer.echo(f"wrote {out}")
