"""The training loop on a tiny model whose forward takes keyword batch tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, TensorDataset

from transferkit.train import LoopConfig, TrainHooks, TrainingError, evaluate_loss_accuracy, train_loop


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


def loader(dataset: TensorDataset, shuffle: bool = False) -> DataLoader:
    """Batches of ``(batch_dict, labels)``, as transferkit's loaders yield them."""

    def collate(pairs: list[Pair]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"x": torch.stack([x for x, _ in pairs])}, torch.stack([y for _, y in pairs])

    return DataLoader(
        dataset, batch_size=8, shuffle=shuffle, collate_fn=collate, generator=torch.Generator().manual_seed(0)
    )


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
