"""``lr-find``: a learning-rate range test that suggests ``--lr`` for ``transferkit fit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.cli.options import (
    BackboneOpt,
    DataArg,
    FromScratchOpt,
    InputSize,
    LayerDecayOpt,
    ModalityOpt,
    PrecisionOpt,
    Reading,
    SeedOpt,
    TrainLastKOpt,
    short_warnings,
)
from transferkit.params import option_range


def lr_find(
    data: DataArg,
    backbone: BackboneOpt = "",
    strategy: Annotated[str, typer.Option(help="the fine-tuning strategy to find a rate for: finetune or "
                                                 "partial")] = "finetune",
    batch_size: Annotated[int, typer.Option(help="batch size (use the one you will fit with)",
                                            **option_range("batch_size"))] = 32,
    layer_decay: LayerDecayOpt = None,
    train_last_k: TrainLastKOpt = None,
    from_scratch: FromScratchOpt = False,
    mixed_precision: PrecisionOpt = "no",
    start_lr: Annotated[float, typer.Option(help="first learning rate of the ramp", **option_range("start_lr"))] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="last learning rate of the ramp", **option_range("end_lr"))] = 1.0,
    num_steps: Annotated[int, typer.Option(help="optimizer steps of the ramp", **option_range("num_steps"))] = 100,
    plot: Annotated[Path | None, typer.Option(help="write the loss curve and the suggestion to this PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result (curve included) as JSON")] = False,
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    *,
    size: InputSize,
    reading: Reading,
) -> None:
    """Suggest a fine-tuning learning rate for DATA with a learning-rate range test.

    Trains a copy of the model for NUM_STEPS steps while the rate rises from START_LR to END_LR,
    stops when the loss diverges, and prints the suggested --lr for `transferkit fit` with the rule
    that chose it. Nothing is saved except the --plot image.
    """
    from transferkit.lr_finder import LRFinderConfig, find_lr

    short_warnings()
    samples = reading.read(data, modality)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"range test of {name} ({strategy}) on {len(samples)} {samples.modality} samples", err=True)
    result = find_lr(samples, backbone=name, strategy=strategy, pretrained=not from_scratch,
                     backbone_options=size.backbone_options(), batch_size=batch_size, layer_decay=layer_decay,
                     train_last_k=train_last_k, seed=seed,
                     config=LRFinderConfig(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps,
                                           mixed_precision=mixed_precision))
    if plot is not None:
        result.plot(plot, title=f"range test: {name} ({strategy}), batch {batch_size}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    stop = f"diverged at {result.lrs[-1]:.2g}" if result.diverged else f"ran to {result.lrs[-1]:.2g}"
    typer.echo(f"suggested lr: {result.suggestion:.2g}")
    typer.echo(f"rule: {result.rule}")
    typer.echo(f"tested {result.lrs[0]:.2g} to {result.lrs[-1]:.2g} in {len(result.lrs)} steps ({stop})")
    if plot is not None:
        typer.echo(f"wrote {plot}")
    given = (("max-length", size.max_length), ("image-size", size.image_size), ("layer-decay", layer_decay),
             ("train-last-k", train_last_k), ("mixed-precision", None if mixed_precision == "no" else mixed_precision))
    same = "".join(f" --{flag} {value}" for flag, value in given if value is not None)
    typer.echo(f"try: transferkit fit {data} --backbone {name} --strategy {strategy} --batch-size {batch_size}{same}"
               f"{' --from-scratch' if from_scratch else ''} --lr {result.suggestion:.2g} --out RUN")
