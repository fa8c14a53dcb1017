"""The training loop on a tiny model whose forward takes keyword batch tensors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, TensorDataset

from transferkit.checkpoint import Checkpoints, read_progress
from transferkit.features import EpochSampler
from transferkit.train import (
    CombinedHooks,
    LoopConfig,
    TrainHooks,
    TrainingError,
    evaluate_loss_accuracy,
    native_bf16,
    resolve_precision,
    retry_on_out_of_memory,
    train_loop,
)


class TinyClassifier(nn.Module):
    """Two features in, two logits out; takes the batch as keywords like a TransferModel."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # (B, 2) -> (B, 2)


def blobs(n: int, seed: int, flip: bool = False) -> TensorDataset:
    """Two Gaussian blobs at (-1, -1) and (1, 1); ``flip`` swaps their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = (labels.float() * 2 - 1).unsqueeze(1).repeat(1, 2) + 0.3 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, 1 - labels if flip else labels)


Pair = tuple[torch.Tensor, torch.Tensor]


def collate(pairs: list[Pair]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Batches of ``(batch_dict, labels)``, as transferkit's loaders yield them."""
    return {"x": torch.stack([x for x, _ in pairs])}, torch.stack([y for _, y in pairs])


def loader(dataset: TensorDataset, shuffle: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=8, shuffle=shuffle, collate_fn=collate, generator=torch.Generator().manual_seed(0)
    )


class KeyedBlobs(Dataset):
    """A dataset indexed as ``EpochSampler`` indexes it: by ``(index, augmentation seed)``."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> Pair:
        return self.data[key[0]]


def epoch_loader(dataset: TensorDataset, seed: int = 0) -> DataLoader:
    """Shuffled in an order that depends only on ``(seed, epoch)``, as ``make_loader`` shuffles."""
    return DataLoader(KeyedBlobs(dataset), batch_size=8, sampler=EpochSampler(len(dataset), seed), collate_fn=collate,
                      generator=torch.Generator().manual_seed(0))


def setup(lr: float = 0.1) -> tuple[TinyClassifier, torch.optim.Optimizer, LambdaLR]:
    torch.manual_seed(0)
    model = TinyClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return model, optimizer, LambdaLR(optimizer, lambda _: 1.0)


def config(**overrides: object) -> LoopConfig:
    values: dict[str, object] = {"epochs": 6, "patience": None, "progress": False}
    values.update(overrides)
    return LoopConfig(**values)  # type: ignore[arg-type]


def val_loss_of(model: nn.Module, dataset: TensorDataset) -> float:
    from accelerate import Accelerator

    return evaluate_loss_accuracy(model, loader(dataset), Accelerator())[0]


def test_loss_goes_down_and_the_model_learns() -> None:
    model, optimizer, scheduler = setup()
    result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0), shuffle=True), loader(blobs(32, 1)), config())
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 6
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_accuracy"] >= 0.95
    assert not model.training  # left in eval mode


def test_without_validation_the_last_epoch_is_kept() -> None:
    model, optimizer, scheduler = setup()
    result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(epochs=3, patience=1))
    assert result.best_epoch == 3 and not result.stopped_early
    assert len(result.history) == 3 and "val_loss" not in result.history[0]


def test_the_best_validation_epoch_is_restored() -> None:
    # validation labels are the opposite of the training labels: every epoch makes validation worse
    val = blobs(32, 1, flip=True)
    model, optimizer, scheduler = setup()
    result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), loader(val), config(epochs=5))
    val_losses = [row["val_loss"] for row in result.history]
    assert len(val_losses) == 5 and not result.stopped_early
    assert val_losses[-1] > val_losses[0]
    assert result.best_epoch == 1
    # the returned weights are epoch 1's, not the last epoch's
    assert val_loss_of(model, val) == pytest.approx(val_losses[0], rel=1e-5)
    assert val_loss_of(model, val) < val_losses[-1]


class ScoreEachEpoch(TrainHooks):
    """Reports a made-up score after each epoch: highest after the second."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        self.weights.append(model.fc.weight.detach().clone())
        return {"score": [0.1, 0.9, 0.5, 0.2][epoch]}


def test_a_monitored_hook_score_picks_the_kept_epoch_without_validation() -> None:
    model, optimizer, scheduler = setup()
    hook = ScoreEachEpoch()
    result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(epochs=4, monitor="score"),
                        hook)
    assert [row["score"] for row in result.history] == [0.1, 0.9, 0.5, 0.2]
    assert result.best_epoch == 2
    assert torch.equal(model.fc.weight, hook.weights[1])
    assert not torch.equal(model.fc.weight, hook.weights[-1])


def test_a_monitored_column_that_no_hook_reports_is_an_error() -> None:
    model, optimizer, scheduler = setup()
    with pytest.raises(TrainingError, match="'score'"):
        train_loop(model, optimizer, scheduler, loader(blobs(16, 0)), None, config(epochs=1, monitor="score"))


class SwappedLabels(TrainHooks):
    """Replaces the forward: logits with the two classes swapped."""

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).flip(1)


def test_a_hook_may_replace_the_forward_and_only_one() -> None:
    model, optimizer, scheduler = setup()
    hooks = CombinedHooks([TrainHooks(), SwappedLabels()])
    train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(epochs=4), hooks)
    with torch.no_grad():
        data = blobs(64, 0)
        accuracy = (model(x=data.tensors[0]).argmax(1) == data.tensors[1]).float().mean()
    assert accuracy < 0.1  # trained through the swapped forward, so the plain forward is backwards
    with pytest.raises(ValueError, match="only one hook"):
        CombinedHooks([SwappedLabels(), SwappedLabels()])


def test_early_stopping_waits_patience_epochs_after_the_best() -> None:
    model, optimizer, scheduler = setup()
    result = train_loop(
        model,
        optimizer,
        scheduler,
        loader(blobs(64, 0)),
        loader(blobs(32, 1, flip=True)),
        config(epochs=20, patience=2),
    )
    assert result.stopped_early
    assert result.best_epoch == 1
    assert len(result.history) == 1 + 2


class NanAfter(TrainHooks):
    """Adds a NaN loss term from the ``after``-th training batch on (0-based)."""

    def __init__(self, after: int) -> None:
        self.after, self.calls = after, 0
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        self.calls += 1
        return torch.tensor(math.nan) if self.calls > self.after else None


def test_a_nan_loss_raises_training_error() -> None:
    model, optimizer, scheduler = setup()
    with pytest.raises(TrainingError, match="nan"):
        train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(), NanAfter(after=0))


def test_a_nan_loss_restores_the_best_weights_so_far() -> None:
    # 8 batches per epoch; the NaN comes at the second batch of epoch 2, after one more optimizer step
    hooks = NanAfter(after=8 + 1)
    model, optimizer, scheduler = setup()
    with pytest.raises(TrainingError, match="epoch 2"):
        train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), loader(blobs(32, 1)), config(), hooks)
    after_epoch_1 = hooks.snapshots[1]
    assert not torch.equal(after_epoch_1["fc.weight"], hooks.snapshots[0]["fc.weight"])
    for name, value in model.state_dict().items():
        assert torch.equal(value, after_epoch_1[name]), name


class StopAt(TrainHooks):
    """Asks the loop to stop at the ``at``-th batch (1-based) and records every loss it is shown."""

    def __init__(self, at: int) -> None:
        self.at, self.losses = at, []

    def should_stop(self, loss: float) -> bool:
        self.losses.append(loss)
        return len(self.losses) == self.at


def test_a_hook_stops_the_loop_mid_epoch_without_the_last_update() -> None:
    # 8 batches per epoch: the stop comes at batch 3 of epoch 2, after 10 optimizer steps
    stopped, optimizer, scheduler = setup()
    hook = StopAt(at=8 + 3)
    result = train_loop(stopped, optimizer, scheduler, loader(blobs(64, 0)), None, config(), hook)
    assert len(hook.losses) == 11 and len(result.history) == 2 and result.stopped_early
    assert all(math.isfinite(loss) for loss in hook.losses)
    ten_steps, optimizer, scheduler = setup()
    truncated = DataLoader(TensorDataset(*blobs(64, 0)[:16]), batch_size=8, collate_fn=collate)
    train_loop(ten_steps, optimizer, scheduler, loader(blobs(64, 0)), None, config(epochs=1))
    train_loop(ten_steps, optimizer, scheduler, truncated, None, config(epochs=1))
    for name, value in ten_steps.state_dict().items():
        assert torch.allclose(stopped.state_dict()[name], value), name


def test_a_hook_sees_a_nan_loss_before_the_loop_raises_on_it() -> None:
    model, optimizer, scheduler = setup()
    hook = StopAt(at=3)
    result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(),
                        CombinedHooks([NanAfter(after=2), hook]))
    assert math.isnan(hook.losses[-1]) and len(hook.losses) == 3 and len(result.history) == 1


class DropoutClassifier(TinyClassifier):
    """Dropout draws from torch's global generator: a resumed run must restore it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.dropout(x, 0.3, self.training))


class Interrupted(Exception):
    pass


class InterruptAt(TrainHooks):
    """Raises ``Interrupted`` at the ``at``-th training batch (1-based), before its optimizer step."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        self.calls += 1
        if self.calls == self.at:
            raise Interrupted
        return None


def dropout_run(hooks: TrainHooks | None = None, checkpoints: Checkpoints | None = None) -> tuple[nn.Module, list]:
    """Four epochs with dropout, shuffling, momentum, a decaying rate and validation."""
    torch.manual_seed(0)
    model = DropoutClassifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = LambdaLR(optimizer, lambda step: 1 / (1 + step / 10))
    result = train_loop(model, optimizer, scheduler, epoch_loader(blobs(64, 0)), loader(blobs(32, 1, flip=True)),
                        config(epochs=4), hooks, checkpoints=checkpoints)
    return model, result.history


def test_a_run_resumed_mid_epoch_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    reference_model, reference_history = dropout_run()
    # 8 batches per epoch; checkpoints after optimizer steps 3, 6, 8 (end of epoch 1), 9 and 12
    with pytest.raises(Interrupted):
        dropout_run(InterruptAt(8 + 6), Checkpoints(tmp_path, every=3))
    progress = read_progress(tmp_path)["loop"]  # type: ignore[index]
    assert (progress["epoch"], progress["step"]) == (1, 4)
    model, history = dropout_run(checkpoints=Checkpoints(tmp_path, every=3, resume=True))
    assert history == reference_history
    for name, value in reference_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_checkpoints_do_not_change_the_result_and_a_finished_run_resumes_without_training(tmp_path: Path) -> None:
    reference_model, reference_history = dropout_run()
    _, history = dropout_run(checkpoints=Checkpoints(tmp_path, every=2))
    assert history == reference_history
    counter = NanAfter(after=10**6)
    model, again = dropout_run(counter, Checkpoints(tmp_path, every=2, resume=True))
    assert counter.calls == 0 and again == reference_history
    for name, value in reference_model.state_dict().items():  # the best epoch's weights, restored
        assert torch.equal(model.state_dict()[name], value), name


def test_a_nan_loss_keeps_the_last_good_checkpoint_and_says_where_it_is(tmp_path: Path) -> None:
    model, optimizer, scheduler = setup()
    # the NaN comes at the 12th batch; checkpoints were written after optimizer steps 2, 4, 6, 8 and 10
    with pytest.raises(TrainingError, match="nan") as error:
        train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), loader(blobs(32, 1)), config(),
                   NanAfter(after=8 + 3), checkpoints=Checkpoints(tmp_path / "ck", every=2))
    assert str(tmp_path / "ck") in str(error.value) and "after 1 epoch(s) and 2 batch(es)" in str(error.value)
    assert read_progress(tmp_path / "ck")["loop"]["optimizer_steps"] == 10  # type: ignore[index]


class OverflowAt(TrainHooks):
    """At the ``at``-th batch, makes the weights infinite (as an overflowing step would)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        self.calls += 1
        if self.calls == self.at:
            with torch.no_grad():
                model.fc.weight.fill_(math.inf)
        return None


def test_infinite_weights_never_replace_a_good_checkpoint(tmp_path: Path) -> None:
    model, optimizer, scheduler = setup()
    with pytest.raises(TrainingError, match="after 0 epoch\\(s\\) and 2 batch"):
        train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(), OverflowAt(4),
                   checkpoints=Checkpoints(tmp_path, every=2))
    assert read_progress(tmp_path)["loop"]["optimizer_steps"] == 2  # type: ignore[index]
    state = Checkpoints(tmp_path).load()[1]["model"]  # type: ignore[index]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())


def test_out_of_memory_halves_the_batch_size_and_retries_with_a_warning() -> None:
    tried = []

    def attempt(batch_size: int) -> int:
        tried.append(batch_size)
        if batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch_size

    with pytest.warns(UserWarning, match="out of memory") as caught:
        assert retry_on_out_of_memory(attempt, 32) == 8
    assert tried == [32, 16, 8]
    assert [str(w.message) for w in caught] == ["out of memory with batch size 32; retrying with 16",
                                                "out of memory with batch size 16; retrying with 8"]


def test_out_of_memory_at_batch_size_one_is_a_training_error_and_other_errors_pass() -> None:
    def cpu_oom(batch_size: int) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes.")

    with pytest.warns(UserWarning), pytest.raises(TrainingError, match="batch size 1"):
        retry_on_out_of_memory(cpu_oom, 2)

    def broken(batch_size: int) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        retry_on_out_of_memory(broken, 4)


def test_precision_names_resolve_and_a_bad_one_is_refused() -> None:
    from transferkit.errors import ConfigError

    assert resolve_precision("auto") == ("bf16" if native_bf16() else "no")
    assert resolve_precision("no") == "no" and resolve_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="mixed precision must be one of no, fp16, bf16, auto, not 'half'"):
        resolve_precision("half")


def test_runs_at_different_precisions_follow_each_other_in_one_process() -> None:
    """Accelerate refuses a second precision per process; the loop resets its state and leaves none behind."""
    from accelerate import Accelerator

    results = []
    for precision in ("no", "bf16", "no"):
        model, optimizer, scheduler = setup()
        result = train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), loader(blobs(32, 1)),
                            config(epochs=2, mixed_precision=precision))
        results.append(result.history[-1]["val_accuracy"])
    assert min(results) >= 0.9
    model, optimizer, scheduler = setup()
    train_loop(model, optimizer, scheduler, loader(blobs(64, 0)), None, config(epochs=1, mixed_precision="bf16"))
    assert Accelerator().mixed_precision == "no"  # the next Accelerator() does not inherit bf16


def test_an_unknown_precision_fails_before_any_data_is_read() -> None:
    from transferkit import TransferClassifier
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="not 'fp8'"):
        TransferClassifier(mixed_precision="fp8").fit(["unreadable"] * 2, ["a", "b"])


def test_bf16_without_native_support_warns_that_it_is_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    import transferkit.train as train_module

    monkeypatch.setattr(train_module, "native_bf16", lambda: False)
    assert resolve_precision("auto") == "no"
    model, optimizer, scheduler = setup()
    with pytest.warns(UserWarning, match="emulates it"):
        train_loop(model, optimizer, scheduler, loader(blobs(16, 0)), None, config(epochs=1, mixed_precision="bf16"))
