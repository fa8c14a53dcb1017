"""Checkpoint files: atomic replacement, pickle-free loading, refusing another run's checkpoint; when
checkpoints are due, and frozen weights left out of them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from transferkit import checkpoint
from transferkit.checkpoint import LATEST, Checkpoints, LoopState, read_progress, remove_checkpoints
from transferkit.errors import ArtifactError, ConfigError
from transferkit.features import EpochSampler
from transferkit.safety import MARKER
from transferkit.train import LoopConfig, TrainHooks, train_loop


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, LATEST, "state-000000004-0000-000004.pt"]
    assert read_progress(tmp_path)["loop"]["step"] == 4  # type: ignore[index]


def test_loading_never_unpickles_arbitrary_objects(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(state_at(0, 1), {"model": {}})
    name = read_progress(tmp_path)["tensors"]  # type: ignore[index]
    torch.save({"model": {}, "best_state": None, "rng": {}, "payload": Path("/etc/passwd")}, tmp_path / name)
    with pytest.raises(ArtifactError, match="cannot read checkpoint") as error:
        checkpoints.load()
    # what it refused, and never torch's advice to retry with weights_only=False
    assert "pickled Python objects (pathlib." in str(error.value)
    assert "weights_only" not in str(error.value) and "trust" not in str(error.value)


def test_no_transferkit_error_passes_on_torchs_advice_to_disable_weights_only(tmp_path: Path) -> None:
    torch.save({"payload": Path("/etc/passwd")}, tmp_path / "evil.pt")
    with pytest.raises(Exception) as refused:  # noqa: PT011  (whatever torch raises)
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert "weights_only" in str(refused.value)  # torch's message does carry the advice
    message = str(ArtifactError(f"cannot load {tmp_path / 'evil.pt'}: {refused.value}"))
    assert message.startswith(f"cannot load {tmp_path / 'evil.pt'}: it holds pickled Python objects")
    assert "weights_only" not in message and "False" not in message and "\n" not in message


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "notes.txt"]


def test_checkpoints_are_due_by_time_or_by_a_step_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clock = [1000.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: clock[0])
    by_time = Checkpoints(tmp_path / "t", interval=60.0)
    assert not by_time.due(500)  # many steps, little time
    clock[0] += 61
    assert by_time.due(501)
    by_time.save(state_at(0, 1), {"model": {}})
    assert not by_time.due(502)
    by_steps = Checkpoints(tmp_path / "s", every=3, interval=None)
    clock[0] += 10**6
    assert [by_steps.due(step) for step in (1, 2, 3)] == [False, False, True]
    by_steps.save(LoopState(optimizer_steps=3), {"model": {}})
    # counted from the last checkpoint, so one skipped at an epoch's end is taken at the next step
    assert [by_steps.due(step) for step in (4, 5, 6, 7)] == [False, False, True, True]


class FrozenTrunkClassifier(nn.Module):
    """A frozen trunk (as a frozen backbone) under a trained, dropout-regularised head."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(2, 64)
        self.norm = nn.BatchNorm1d(64)  # its running statistics change although nothing in it trains
        self.fc = nn.Linear(64, 2)
        self.trunk.requires_grad_(False)
        self.norm.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.norm(self.trunk(x)))  # (B, 64)
        return self.fc(nn.functional.dropout(features, 0.3, self.training))  # (B, 2)


class Blobs(Dataset):
    """Two labelled Gaussian blobs, indexed by position or as ``EpochSampler`` indexes: ``(index, seed)``."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        self.x = (self.y.float() * 2 - 1).unsqueeze(1).repeat(1, 2) + 0.5 * torch.randn(n, 2, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = key[0] if isinstance(key, tuple) else key
        return self.x[index], self.y[index]


def _collate(pairs: list) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    return {"x": torch.stack([x for x, _ in pairs])}, torch.stack([y for _, y in pairs])


class StopAt(TrainHooks):
    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt  # as a user's Ctrl-C


def frozen_trunk_run(checkpoints: Checkpoints | None = None, hooks: TrainHooks | None = None,
                     trunk_seed: int = 0) -> tuple[nn.Module, list]:
    torch.manual_seed(trunk_seed)
    model = FrozenTrunkClassifier()
    torch.manual_seed(1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step / 10))
    # a loader without its own generator would draw from the global stream, which dropout uses
    train = DataLoader(Blobs(48, 0), batch_size=8, sampler=EpochSampler(48, 0), collate_fn=_collate,
                       generator=torch.Generator().manual_seed(0))
    val = DataLoader(Blobs(16, 1), batch_size=8, collate_fn=_collate, generator=torch.Generator().manual_seed(0))
    result = train_loop(model, optimizer, scheduler, train, val, LoopConfig(epochs=3, patience=None, progress=False),
                        hooks, checkpoints=checkpoints)
    return model, result.history


def test_a_frozen_trunk_is_not_saved_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    reference, reference_history = frozen_trunk_run()
    # 6 batches an epoch, a checkpoint every 4 steps: after steps 4 and 8; interrupted at batch 11
    with pytest.raises(KeyboardInterrupt):
        frozen_trunk_run(Checkpoints(tmp_path, every=4), StopAt(11))
    latest = read_progress(tmp_path)
    assert latest["loop"]["optimizer_steps"] == 8  # type: ignore[index]
    assert set(latest["frozen"]) == {"trunk.weight", "trunk.bias", "norm.weight", "norm.bias"}  # type: ignore[index]
    saved = torch.load(tmp_path / latest["tensors"], weights_only=True)  # type: ignore[index]
    assert set(saved["model"]) == {"fc.weight", "fc.bias", "norm.running_mean", "norm.running_var",
                                   "norm.num_batches_tracked"}
    assert set(saved["best_state"]) == set(saved["model"])
    model, history = frozen_trunk_run(Checkpoints(tmp_path, every=4, resume=True))
    assert history == reference_history
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_resuming_onto_other_frozen_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        frozen_trunk_run(Checkpoints(tmp_path, every=4), StopAt(7))
    with pytest.raises(ConfigError, match="frozen weights \\(trunk"):
        frozen_trunk_run(Checkpoints(tmp_path, every=4, resume=True), trunk_seed=5)


def test_epochs_end_without_a_checkpoint_unless_one_is_due(tmp_path: Path) -> None:
    saves: list[int] = []

    class Counting(Checkpoints):
        def save(self, state: LoopState, tensors: dict) -> None:
            saves.append(state.optimizer_steps)
            super().save(state, tensors)

    frozen_trunk_run(Counting(tmp_path / "time"))  # 3 epochs in far less than the interval
    assert saves == []
    frozen_trunk_run(Counting(tmp_path / "steps", every=5, interval=None))
    assert saves == [5, 10, 15]  # 18 steps; the one due at step 12 is taken at the end of epoch 2
