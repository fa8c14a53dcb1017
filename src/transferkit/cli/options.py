"""Option types shared by the commands, defined once, and the helpers that turn their values into calls.

Each ``*Opt`` is an ``Annotated`` type a command uses as a parameter's annotation; a command that needs
a different help text or default declares its own option instead. Options that commands take together
are an ``OptionGroup`` (``Reading``, ``InputSize``, ``Checkpointing``): a command declares one parameter
of the group's type, and ``expand_option_groups`` puts the group's fields on the command line in its place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from transferkit.params import option_range


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
ImageSizeOpt = Annotated[int | None, typer.Option(help="image side in pixels", **option_range("image_size"))]
MaxLengthOpt = Annotated[int | None, typer.Option(help="text length in tokens", **option_range("max_length"))]
FromScratchOpt = Annotated[bool, typer.Option(help="random weights instead of pretrained ones")]

# training
BatchSizeOpt = Annotated[int, typer.Option(help="batch size", **option_range("batch_size"))]
LayerDecayOpt = Annotated[float | None, typer.Option(help="learning-rate factor per layer group toward the input",
                                                     **option_range("layer_decay"))]
TrainLastKOpt = Annotated[int | None, typer.Option(help="fine-tune only the last k layer groups",
                                                   **option_range("train_last_k"))]
EpochsOpt = Annotated[int | None, typer.Option(help="training epochs", **option_range("epochs"))]
LrOpt = Annotated[float | None, typer.Option(help="peak learning rate", **option_range("lr"))]
PrecisionOpt = Annotated[str, typer.Option(help="training precision: no, bf16, fp16, or auto (bf16 where the CPU or "
                                                "GPU computes in it natively, ~2x faster; full precision elsewhere)")]
SeedOpt = Annotated[int, typer.Option(help="random seed", **option_range("seed"))]
ResumeOpt = Annotated[bool, typer.Option(help="continue an interrupted run from its last checkpoint in "
                                              "OUT.checkpoints/ next to OUT")]
CheckpointEveryOpt = Annotated[int, typer.Option(help="checkpoint every N optimizer steps as well as every "
                                                      "5 minutes (0: by time only)",
                                                 **option_range("checkpoint_every"))]

# output
OverwriteOpt = Annotated[bool, typer.Option(help="replace an existing --out folder")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@dataclass
class OptionGroup:
    """Options several commands take together, as a dataclass whose fields are annotated like parameters."""


@dataclass
class Reading(OptionGroup):
    """How the rows or files of DATA are read."""

    text_column: TextColOpt = None
    label_column: LabelColOpt = None
    path_column: PathColOpt = None
    on_error: OnErrorOpt = OnError.skip

    def read_options(self) -> dict[str, Any]:
        """The keyword arguments of ``transferkit.data.read_dataset``."""
        return {"text_column": self.text_column, "label_column": self.label_column,
                "path_column": self.path_column, "on_error": OnError(self.on_error).value}

    def read(self, data: Path, modality: str | None = None, *, require_labels: bool = True) -> Any:
        """Read DATA; skipped items and their count are warnings (stderr)."""
        from transferkit.data import read_dataset

        return read_dataset(data, modality=modality, require_labels=require_labels, **self.read_options())


@dataclass
class InputSize(OptionGroup):
    """The input size the backbone sees; unset ones keep the backbone's defaults."""

    image_size: ImageSizeOpt = None
    max_length: MaxLengthOpt = None

    def backbone_options(self) -> dict[str, Any] | None:
        given = {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
        return given or None


@dataclass
class Checkpointing(OptionGroup):
    """Replacing or resuming what a training command writes at --out, and how often it checkpoints."""

    overwrite: Annotated[bool, typer.Option(help="replace an existing --out (and the checkpoints of an "
                                                 "interrupted run)")] = False
    resume: ResumeOpt = False
    checkpoint_every: CheckpointEveryOpt = 1000

    def folder(self, out: Path) -> Path:
        """The run's checkpoint folder, ``OUT.checkpoints/``; an interrupted run's checkpoints are removed
        first when --overwrite starts it again without --resume."""
        from transferkit.checkpoint import checkpoint_folder, remove_checkpoints

        folder = checkpoint_folder(out)
        if self.overwrite and not self.resume:
            remove_checkpoints(folder)
        return folder


def expand_option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with each ``OptionGroup`` parameter replaced by the group's fields on the command line;
    the command itself is called with one instance of the group."""
    hints = typing.get_type_hints(command, include_extras=True)
    groups: dict[str, type[OptionGroup]] = {}
    params: list[inspect.Parameter] = []
    for param in inspect.signature(command).parameters.values():
        hint = hints[param.name]
        if isinstance(hint, type) and issubclass(hint, OptionGroup):
            groups[param.name] = hint
            field_hints = typing.get_type_hints(hint, include_extras=True)
            params += [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                         annotation=field_hints[field.name]) for field in dataclasses.fields(hint)]
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hint))
    if not groups:
        return command

    @functools.wraps(command)
    def with_groups(**kwargs: Any) -> Any:
        for name, group in groups.items():
            kwargs[name] = group(**{field.name: kwargs.pop(field.name) for field in dataclasses.fields(group)})
        return command(**kwargs)

    with_groups.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    with_groups.__annotations__ = {param.name: param.annotation for param in params}
    return with_groups


def short_warnings() -> None:
    """Print warnings as one ``warning: ...`` line, without the source line."""
    warnings.formatwarning = lambda message, category, *_a, **_k: f"warning: {message}\n"  # type: ignore[assignment]


def refuse_existing(out: Path | None, overwrite: bool, what: str = "output directory",
                    inputs: tuple[Path | None, ...] = ()) -> None:
    """Stop before any work when --out exists and --overwrite was not given, when --overwrite would replace
    something that is not a transferkit output (a user's folder or file, the input data), or when --out
    cannot be written (``transferkit.safety.check_output``)."""
    from transferkit.safety import check_output

    if out is not None:
        check_output(out, overwrite=overwrite, what=what, inputs=inputs)


def split_list(text: str) -> list[str]:
    """A comma-separated option as a list of its non-empty parts."""
    return [part.strip() for part in text.split(",") if part.strip()]
