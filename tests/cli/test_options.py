"""Option groups: a command declares one parameter per group; the group's fields are its command-line options."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from transferkit.checkpoint import Checkpoints, LoopState, checkpoint_folder
from transferkit.cli.options import Checkpointing, InputSize, OnError, Reading, expand_option_groups


def test_a_group_becomes_its_options_and_reaches_the_command_as_one_instance() -> None:
    seen: list[tuple[int, InputSize, Reading]] = []

    def command(k: int = 1, *, size: InputSize, reading: Reading) -> None:
        seen.append((k, size, reading))

    app = typer.Typer()
    app.command()(expand_option_groups(command))
    app.command("other")(lambda: None)  # two commands, so typer dispatches by name
    result = CliRunner().invoke(app, ["command", "--k", "3", "--max-length", "64", "--text-column", "review",
                                      "--on-error", "fail"])
    assert result.exit_code == 0, result.output
    (k, size, reading), = seen
    assert k == 3
    assert size == InputSize(image_size=None, max_length=64) and size.backbone_options() == {"max_length": 64}
    assert reading == Reading(text_column="review", on_error=OnError.fail)
    assert reading.read_options() == {"text_column": "review", "label_column": None, "path_column": None,
                                      "on_error": "fail"}
    assert InputSize().backbone_options() is None


def test_a_group_field_that_clashes_with_a_parameter_is_refused_at_registration() -> None:
    def command(max_length: int = 0, *, size: InputSize) -> None: ...

    with pytest.raises(ValueError, match="max_length"):
        expand_option_groups(command)


def test_checkpointing_removes_stale_checkpoints_only_when_overwriting_without_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    folder = checkpoint_folder(out)
    assert folder == tmp_path / "run.checkpoints"

    def stale() -> None:  # a real checkpoint: a folder transferkit did not write is never removed
        Checkpoints(folder).save(LoopState(), {"model": {}})

    stale()
    assert Checkpointing(overwrite=True, resume=True).folder(out) == folder and (folder / "latest.json").exists()
    assert Checkpointing().folder(out) == folder and (folder / "latest.json").exists()
    assert Checkpointing(overwrite=True).folder(out) == folder and not folder.exists()
