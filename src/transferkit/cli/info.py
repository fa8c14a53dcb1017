"""What is registered (``backbones``, ``strategies``, ``adapters``, ``scores``) and the offline ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transferkit.cli.options import SeedOpt


def backbones() -> None:
    """List the registered backbones and backbone sources."""
    from transferkit.backbones import registered_backbones

    for entry in registered_backbones():
        where = "offline" if entry.offline else "needs internet for weights"
        if not entry.pretrained_weights:
            where = "random init only"
        typer.echo(f"{entry.name:<20} {entry.modality or 'any':<6} {where:<26} {entry.description}")


def strategies() -> None:
    """List the registered strategies."""
    from transferkit.strategies import registered_strategies

    for entry in registered_strategies():
        typer.echo(f"{entry.name:<14} {entry.description}")


def adapters() -> None:
    """List the registered domain-adaptation methods (feature-level and deep) and their search grids."""
    from transferkit.adapt import registered_adapters  # importing the package registers every method

    for entry in sorted(registered_adapters(), key=lambda m: (m.level, m.name)):
        grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in entry.grid.items())
        free = " (source-free)" if entry.source_free else ""
        shown = f"  [grid: {grid}]" if grid else ""
        typer.echo(f"{entry.name:<22} {entry.level:<9} {entry.description}{free}{shown}")


def scores() -> None:
    """List the registered transferability scores (for `transferkit rank --scores`)."""
    from transferkit.select import registered_scores

    for entry in registered_scores():
        needs = "needs source head" if entry.needs_source_probs else ""
        typer.echo(f"{entry.name:<16} {needs:<18} {entry.description}")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the three run directories")] =
    Path("transferkit-demo"),
    shots: Annotated[int, typer.Option(help="labelled images per class")] = 10,
    image_size: Annotated[int, typer.Option(help="upscaled image side in pixels")] = 128,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs")] = 12,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing demo folder")] = False,
) -> None:
    """Transfer ImageNet EfficientNet-Lite0 to handwritten digits with a few labels, offline.

    Fits a linear probe, a fine-tune, and the same network from scratch; prints accuracy and time.
    """
    from transferkit.demo import format_table, run_demo

    rows = run_demo(out, shots=shots, image_size=image_size, epochs=epochs, seed=seed, overwrite=overwrite)
    typer.echo("")
    typer.echo(format_table(rows))
    best = max(rows, key=lambda r: r.accuracy)
    typer.echo(f"\nrun directories are in {out}/; try:\n  transferkit predict {best.run_dir} {out}/examples/*.png")
