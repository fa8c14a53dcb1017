"""Checkpoint files: atomic replacement, pickle-free loading, refusing another run's checkpoint."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.checkpoint import LATEST, Checkpoints, LoopState, read_progress, remove_checkpoints
from transferkit.errors import ArtifactError, ConfigError


def state_at(epoch: int, step: int) -> LoopState:
    return LoopState(epoch=epoch, step=step, optimizer_steps=10 * epoch + step, history=[{"epoch": 1}],
                     best_key=(0.5, -0.7), best_epoch=1, best_state={"w": torch.full((2,), float(step))})


def test_a_checkpoint_round_trips_progress_tensors_and_generators(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ck", signature={"lr": 0.1, "groups": (1, 2)})
    random.seed(1)
    np.random.seed(2)
    checkpoints.save(state_at(1, 3), {"model": {"w": torch.arange(3.0)}, "optimizer": {"state": {}, "lr": 0.1}})
    expected_python, expected_numpy = random.random(), np.random.rand()
    random.seed(5)
    np.random.seed(5)
    state, tensors = Checkpoints(tmp_path / "ck", signature={"lr": 0.1, "groups": (1, 2)}).load()  # type: ignore[misc]
    assert (state.epoch, state.step, state.optimizer_steps) == (1, 3, 13)
    assert state.best_key == (0.5, -0.7) and state.history == [{"epoch": 1}]
    assert torch.equal(state.best_state["w"], torch.full((2,), 3.0))  # type: ignore[index]
    assert torch.equal(tensors["model"]["w"], torch.arange(3.0)) and tensors["optimizer"]["lr"] == 0.1
    assert random.random() == expected_python and np.random.rand() == expected_numpy


def test_a_new_checkpoint_replaces_the_old_one_and_leftovers_are_ignored(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(state_at(0, 2), {"model": {}})
    # what a SIGKILL in the middle of the next write leaves behind: a partial temporary file
    (tmp_path / ".state-000000004-0000-000004.pt.tmp99").write_bytes(b"\x00" * 10)
    assert Checkpoints(tmp_path).load()[0].step == 2  # type: ignore[index]
    checkpoints.save(state_at(0, 4), {"model": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, "state-000000004-0000-000004.pt"]
    assert read_progress(tmp_path)["loop"]["step"] == 4  # type: ignore[index]


def test_loading_never_unpickles_arbitrary_objects(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(state_at(0, 1), {"model": {}})
    name = read_progress(tmp_path)["tensors"]  # type: ignore[index]
    torch.save({"model": {}, "best_state": None, "rng": {}, "payload": Path("/etc/passwd")}, tmp_path / name)
    with pytest.raises(ArtifactError, match="cannot read checkpoint"):
        checkpoints.load()


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    Checkpoints(tmp_path, signature={"config": {"lr": 0.1, "seed": 0}, "epochs": 3}).save(state_at(0, 1), {})
    with pytest.raises(ConfigError, match="differs in config.lr, epochs"):
        Checkpoints(tmp_path, signature={"config": {"lr": 0.2, "seed": 0}, "epochs": 4}).load()


def test_no_checkpoint_and_a_corrupt_one(tmp_path: Path) -> None:
    assert Checkpoints(tmp_path).load() is None
    (tmp_path / LATEST).write_text("{not json")
    with pytest.raises(ArtifactError, match=LATEST):
        read_progress(tmp_path)
    (tmp_path / LATEST).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99"):
        read_progress(tmp_path)


def test_remove_checkpoints_deletes_only_checkpoint_files(tmp_path: Path) -> None:
    Checkpoints(tmp_path / "ck").save(state_at(0, 1), {"model": {}})
    remove_checkpoints(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
    Checkpoints(tmp_path).save(state_at(0, 1), {"model": {}})
    (tmp_path / "notes.txt").write_text("mine")
    remove_checkpoints(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
