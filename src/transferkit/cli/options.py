"""Option types shared by the commands, defined once, and the helpers that turn their values into calls.

Each ``*Opt`` is an ``Annotated`` type a command uses as a parameter's annotation; a command that needs
a different help text or default declares its own option instead.
"""

from __future__ import annotations

import json
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from transferkit.errors import TransferkitError


class OnError(StrEnum):
    skip = "skip"
    fail = "fail"


# data reading
DataArg = Annotated[Path, typer.Argument(help="image folder (one subfolder per class), CSV/TSV/JSONL of texts "
                                              "and labels, audio folder, or CSV of media paths and labels")]
RunArg = Annotated[Path, typer.Argument(help="run directory written by `transferkit fit`")]
ModalityOpt = Annotated[str | None, typer.Option(help="image, text or audio (inferred when omitted)")]
TextColOpt = Annotated[str | None, typer.Option(help="text column of a table (default: text/sentence/content/...)")]
LabelColOpt = Annotated[str | None, typer.Option(help="label column of a table (default: label/class/target/...)")]
PathColOpt = Annotated[str | None, typer.Option(help="column of media file paths in a table (default: path/file/...)")]
OnErrorOpt = Annotated[OnError, typer.Option(
    help="a corrupt or unreadable file: 'skip' it with a warning (a count is printed), or 'fail' at once")]

# the backbone
BackboneOpt = Annotated[str, typer.Option(help="registered name, timm:NAME, hf:NAME_OR_PATH or a local "
                                               "directory; default: the zoo backbone of the data's modality")]
ImageSizeOpt = Annotated[int | None, typer.Option(help="image side in pixels")]
MaxLengthOpt = Annotated[int | None, typer.Option(help="text length in tokens")]
FromScratchOpt = Annotated[bool, typer.Option(help="random weights instead of pretrained ones")]

# training
BatchSizeOpt = Annotated[int, typer.Option(help="batch size")]
LayerDecayOpt = Annotated[float | None, typer.Option(help="learning-rate factor per layer group toward the input")]
TrainLastKOpt = Annotated[int | None, typer.Option(help="fine-tune only the last k layer groups")]
PrecisionOpt = Annotated[str, typer.Option(help="training precision: no, bf16, fp16, or auto (bf16 where the CPU or "
                                                "GPU computes in it natively, ~2x faster; full precision elsewhere)")]
SeedOpt = Annotated[int, typer.Option(help="random seed")]
ResumeOpt = Annotated[bool, typer.Option(help="continue an interrupted run from its last checkpoint in "
                                              "OUT.checkpoints/ next to OUT")]
CheckpointEveryOpt = Annotated[int, typer.Option(help="checkpoint every N optimizer steps as well as every "
                                                      "5 minutes (0: by time only)")]

# output
OverwriteOpt = Annotated[bool, typer.Option(help="replace an existing --out (and the checkpoints of an "
                                                 "interrupted run)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def short_warnings() -> None:
    """Print warnings as one ``warning: ...`` line, without the source line."""
    warnings.formatwarning = lambda message, category, *_a, **_k: f"warning: {message}\n"  # type: ignore[assignment]


def backbone_options(image_size: int | None, max_length: int | None) -> dict[str, Any]:
    """Backbone options given on the command line (unset ones keep the backbone's defaults)."""
    given = {"image_size": image_size, "max_length": max_length}
    return {key: value for key, value in given.items() if value is not None}


def read_data(data: Path, modality: str | None, text_column: str | None, label_column: str | None,
              path_column: str | None, on_error: OnError, require_labels: bool = True) -> Any:
    """Read DATA with the data-reading options; skipped items and their count are warnings (stderr)."""
    from transferkit.data import read_dataset

    return read_dataset(data, modality=modality, text_column=text_column, label_column=label_column,
                        path_column=path_column, on_error=on_error.value, require_labels=require_labels)


def refuse_existing(out: Path | None, overwrite: bool, what: str = "output directory") -> None:
    """Stop before any work when --out exists and --overwrite was not given."""
    if out is not None and out.exists() and not overwrite:
        raise TransferkitError(f"{what} {out} already exists; choose another --out or pass --overwrite")


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list of its non-empty parts."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_params(values: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values are read as JSON when they parse (numbers, true/false)."""
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TransferkitError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params
