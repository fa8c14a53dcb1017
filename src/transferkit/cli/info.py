"""What is registered (``list``, and its shortcuts ``backbones``, ``strategies``, ``scores``) and the offline ``demo``.

Every listing is one registry printed the same way: the name, the entry's short facts (its ``listing()``, when
its kind has one) and its description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from transferkit.cli.options import SeedOpt
from transferkit.errors import ConfigError
from transferkit.params import option_range
from transferkit.registry import Registry, registries


def format_registry(registry: Registry[Any]) -> list[str]:
    """One line per entry: name, short facts, description, in columns as wide as the registry needs."""
    rows = [(entry.name, *(entry.listing() if hasattr(entry, "listing") else ()), entry.description)
            for entry in registry]
    widths = [max((len(row[i]) for row in rows if len(row) > i + 1), default=0) for i in range(max(map(len, rows)))]
    return ["  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]) for row in rows]


def find_registry(kind: str) -> Registry[Any]:
    """The registry of ``kind``, as the user types it (``adaptation-method``, ``strategies``).

    Raises:
        ConfigError: no registry of that kind (lists the kinds).
    """
    found = registries()
    wanted = " ".join(kind.lower().replace("_", " ").replace("-", " ").split())
    for name, registry in found.items():
        if wanted in (name, name + "s", name[:-1] + "ies"):
            return registry
    kinds = ", ".join(name.replace(" ", "-") for name in found)
    raise ConfigError(f"unknown kind {kind!r}; choose one of {kinds}")


def list_registered(kind: Annotated[str | None, typer.Argument(
        help="one kind (backbone, strategy, regularizer, adaptation-method, input-transform, score, ...); "
             "default: all")] = None) -> None:
    """List what is registered: every kind, or one, with names and descriptions."""
    chosen = [find_registry(kind)] if kind else list(registries().values())
    for registry in chosen:
        if len(chosen) > 1:
            typer.echo(f"{registry.kind.replace(' ', '-')} ({len(registry)}):")
        for line in format_registry(registry):
            typer.echo(f"  {line}" if len(chosen) > 1 else line)


def backbones() -> None:
    """List the registered backbones and backbone sources (`transferkit list backbone`)."""
    list_registered("backbone")


def strategies() -> None:
    """List the registered strategies (`transferkit list strategy`)."""
    list_registered("strategy")


def scores() -> None:
    """List the registered transferability scores, for `transferkit rank --scores` (`transferkit list score`)."""
    list_registered("score")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the three run directories")] =
    Path("transferkit-demo"),
    shots: Annotated[int, typer.Option(help="labelled images per class", **option_range("shots"))] = 10,
    image_size: Annotated[int, typer.Option(help="upscaled image side in pixels", **option_range("image_size"))] = 128,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs", **option_range("epochs"))] = 12,
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
