"""The one training loop. Strategies and adaptation methods plug in through ``TrainHooks``.

Accelerate handles devices, mixed precision and gradient accumulation, so the same loop runs on a
laptop CPU, one GPU, or several processes under ``accelerate launch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from transferkit.errors import TransferkitError


class TrainingError(TransferkitError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


@dataclass
class LoopConfig:
    """How long and how to train.

    Attributes:
        epochs: passes over the training data.
        patience: stop after this many epochs without a better validation score (None: never).
        grad_accum: batches per optimizer step.
        mixed_precision: ``"no"``, ``"fp16"`` or ``"bf16"`` (Accelerate's names).
        max_grad_norm: clip gradients to this norm (None: no clipping).
        progress: show progress bars.
    """

    epochs: int = 5
    patience: int | None = 3
    grad_accum: int = 1
    mixed_precision: str = "no"
    max_grad_norm: float | None = 1.0
    progress: bool = True


class TrainHooks:
    """Points where a strategy changes the loop without copying it. Defaults do nothing."""

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called before each epoch (gradual unfreezing changes what trains here)."""

    def train_mode(self, model: nn.Module) -> None:
        """Adjust modes after the loop's ``model.train()`` (e.g. keep BatchNorm statistics frozen)."""

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """A term added to the cross-entropy (regularisers, adaptation losses)."""
        return None

    def on_train_end(self, model: nn.Module) -> None:
        """Called once when training stops, however it stops (remove module hooks here)."""


class CombinedHooks(TrainHooks):
    """Several hooks applied in order; their extra losses add up."""

    def __init__(self, hooks: list[TrainHooks]) -> None:
        self.hooks = hooks

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for hook in self.hooks:
            hook.on_epoch_start(epoch, model, optimizer)

    def train_mode(self, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.train_mode(model)

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        terms = [t for t in (hook.extra_loss(model, logits, labels) for hook in self.hooks) if t is not None]
        return torch.stack(terms).sum() if terms else None

    def on_train_end(self, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.on_train_end(model)


@dataclass
class TrainResult:
    """What happened: one row per epoch, and which epoch's weights were kept."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


@torch.no_grad()
def evaluate_loss_accuracy(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``loader``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for batch, labels in loader:
        logits = model(**batch)
        total_loss += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += len(labels)
    return total_loss / max(count, 1), correct / max(count, 1)


def train_loop(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, train_loader: DataLoader,
               val_loader: DataLoader | None, config: LoopConfig, hooks: TrainHooks | None = None) -> TrainResult:
    """Train ``model`` with cross-entropy; keep the weights of the best validation epoch.

    The model's forward takes the batch dict of the backbone's ``collate`` and returns logits.
    Without a validation loader the last epoch's weights are kept.

    Raises:
        TrainingError: the loss became NaN or infinite (the best weights so far are restored first).
    """
    hooks = hooks or TrainHooks()
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.grad_accum)
    prepared = accelerator.prepare(model, optimizer, train_loader, scheduler)
    model, optimizer, train_loader, scheduler = prepared
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    result = TrainResult()
    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    show = config.progress and accelerator.is_local_main_process
    try:
        for epoch in range(config.epochs):
            hooks.on_epoch_start(epoch, accelerator.unwrap_model(model), optimizer)
            model.train()
            hooks.train_mode(model)
            running, seen = 0.0, 0
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not show,
                       leave=False)
            for batch, labels in bar:
                with accelerator.accumulate(model):
                    logits = model(**batch)  # (B, C)
                    loss = F.cross_entropy(logits.float(), labels)
                    extra = hooks.extra_loss(model, logits, labels)
                    if extra is not None:
                        loss = loss + extra
                    if not torch.isfinite(loss):
                        if best_state is not None:
                            accelerator.unwrap_model(model).load_state_dict(best_state)
                        raise TrainingError(f"loss became {float(loss.detach())} in epoch {epoch + 1}; lower the "
                                            "learning rate or check the data (the best weights so far were kept)")
                    accelerator.backward(loss)
                    if config.max_grad_norm and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                running += float(loss.detach()) * len(labels)
                seen += len(labels)
                bar.set_postfix(loss=f"{running / max(seen, 1):.4f}")
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": running / max(seen, 1),
                                   "lr": optimizer.param_groups[-1]["lr"]}
            if val_loader is not None:
                row["val_loss"], row["val_accuracy"] = evaluate_loss_accuracy(model, val_loader, accelerator)
                key = (row["val_accuracy"], -row["val_loss"])
                if best_key is None or key > best_key:
                    best_key, bad_epochs, result.best_epoch = key, 0, epoch + 1
                    state = accelerator.unwrap_model(model).state_dict()
                    best_state = {k: v.detach().clone() for k, v in state.items()}
                else:
                    bad_epochs += 1
            result.history.append(row)
            if show:
                tqdm.write("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if config.patience is not None and val_loader is not None and bad_epochs >= config.patience:
                result.stopped_early = True
                break
    finally:
        hooks.on_train_end(accelerator.unwrap_model(model))
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    unwrapped.eval()
    return result


def steps_per_epoch(loader: DataLoader, grad_accum: int) -> int:
    return max(1, math.ceil(len(loader) / max(grad_accum, 1)))
