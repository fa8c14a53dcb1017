"""The one training loop. Strategies and adaptation methods plug in through ``TrainHooks``.

Accelerate handles devices, mixed precision and gradient accumulation, so the same loop runs on a
laptop CPU, one GPU, or several processes under ``accelerate launch``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from transferkit import distributed
from transferkit.checkpoint import Checkpoints, LoopState, restore_torch_rng
from transferkit.errors import ConfigError, TransferkitError
from transferkit.tasks import Classification, Task
from transferkit.tasks.base import IGNORE_INDEX

T = TypeVar("T")


class TrainingError(TransferkitError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


@dataclass
class LoopConfig:
    """How long and how to train.

    Attributes:
        epochs: passes over the training data.
        patience: stop after this many epochs without a better validation score (None: never).
        grad_accum: batches per optimizer step.
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` (Accelerate's names) or ``"auto"`` (bf16 where
            the hardware computes in it natively, see ``resolve_precision``).
        max_grad_norm: clip gradients to this norm (None: no clipping).
        progress: show progress bars.
        monitor: without a validation loader, the history column (added by ``TrainHooks.on_epoch_end``)
            whose highest value picks the epoch whose weights are kept, e.g. a label-free adaptation score
            (None: keep the last epoch).
    """

    epochs: int = 5
    patience: int | None = 3
    grad_accum: int = 1
    mixed_precision: str = "no"
    max_grad_norm: float | None = 1.0
    progress: bool = True
    monitor: str | None = None


PRECISIONS = ("no", "fp16", "bf16", "auto")


def native_bf16() -> bool:
    """Whether this machine's default device computes in bfloat16 natively (so autocast speeds it up).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AVX-512 BF16 or AMX instructions; without them
    PyTorch emulates bfloat16 and autocast only slows training down.
    """
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_precision(name: str) -> str:
    """Accelerate's precision name for ``name``: ``"auto"`` becomes ``"bf16"`` when ``native_bf16()``, else ``"no"``.

    Raises:
        ConfigError: a name that is not one of ``PRECISIONS``.
    """
    if name not in PRECISIONS:
        raise ConfigError(f"mixed precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "auto":
        return "bf16" if native_bf16() else "no"
    return name


@contextmanager
def accelerator_for(mixed_precision: str, grad_accum: int = 1) -> Iterator[Accelerator]:
    """An ``Accelerator`` for one run at ``mixed_precision``.

    Accelerate keeps one process-wide state and refuses a second precision in the same process, so
    fitting a bf16 model after a full-precision one would fail. The state is cleared when the asked
    precision differs from the current one, and cleared again after a reduced-precision run, so that
    the next ``Accelerator()`` in the process (ours or another library's) starts from its own settings
    instead of silently inheriting bf16.
    """
    precision = resolve_precision(mixed_precision)
    if mixed_precision == "bf16" and not native_bf16():  # "auto" only picks bf16 where it is native
        warnings.warn("mixed_precision='bf16' on hardware without native bfloat16: PyTorch emulates it, so "
                      "training is slower than in full precision; use 'auto' to pick bf16 only where it helps",
                      stacklevel=3)
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", "no") != precision:
        AcceleratorState._reset_state()
    # Under ``accelerate launch`` each batch is split across the processes (the same optimizer steps as one
    # process), and DDP looks for parameters that a step leaves out: frozen layer groups that gradual
    # unfreezing opens later, a backbone behind a detached head. Both are no-ops on one process.
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    distributed.state()  # joins the launch's process group, over gloo on a CPU-only machine
    try:
        yield Accelerator(mixed_precision=precision, gradient_accumulation_steps=grad_accum, split_batches=True,
                          kwargs_handlers=[unused])
    finally:
        if precision != "no":
            AcceleratorState._reset_state()


class TrainHooks:
    """Points where a strategy changes the loop without copying it. Defaults do nothing."""

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called before each epoch (gradual unfreezing changes what trains here).

        A run resumed mid-epoch calls it again for that epoch, after ``load_state_dict``: a hook whose work
        here is not a function of the epoch alone (pseudo-labels from the current model) keeps in its state
        which epoch it last did, and does not redo it.
        """

    def train_mode(self, model: nn.Module) -> None:
        """Adjust modes after the loop's ``model.train()`` (e.g. keep BatchNorm statistics frozen)."""

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The labelled batch's logits (adaptation methods forward unlabelled target samples alongside)."""
        return model(**batch)

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """A term added to the task's loss (regularisers, adaptation losses)."""
        return None

    def should_stop(self, loss: float) -> bool:
        """Sees each batch's loss (NaN and infinity included) before its update; True ends training there,
        without that update, after closing the epoch (the learning-rate range test stops on divergence)."""
        return False

    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        """Called after each epoch's training; the returned values join the epoch's history row."""
        return None

    def after_validation(self, epoch: int, row: dict[str, Any]) -> None:
        """Sees each epoch's finished history row, validation score included (a hyperparameter search
        reports it here and may raise to prune the run)."""

    def on_train_end(self, model: nn.Module) -> None:
        """Called once when training stops, however it stops (remove module hooks here)."""

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the hook trains outside the model (a domain discriminator): under ``accelerate launch``
        the loop averages their gradients across the processes, as DDP does for the model's."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What the hook carries from step to step that a resumed run needs (a discriminator's weights,
        pseudo-labels, a stream position): tensors and plain Python values, saved with each checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what ``state_dict`` returned; called on resume before the first resumed batch."""


class CombinedHooks(TrainHooks):
    """Several hooks applied in order; their extra losses add up, at most one replaces ``forward``."""

    def __init__(self, hooks: list[TrainHooks]) -> None:
        self.hooks = hooks
        forwards = [hook for hook in hooks if type(hook).forward is not TrainHooks.forward]
        if len(forwards) > 1:
            raise ValueError(f"only one hook may replace forward, got {[type(h).__name__ for h in forwards]}")
        self.forwarding = forwards[0] if forwards else None

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for hook in self.hooks:
            hook.on_epoch_start(epoch, model, optimizer)

    def train_mode(self, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.train_mode(model)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forwarding.forward(model, batch) if self.forwarding else model(**batch)

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        terms = [t for t in (hook.extra_loss(model, logits, labels) for hook in self.hooks) if t is not None]
        return torch.stack(terms).sum() if terms else None

    def should_stop(self, loss: float) -> bool:
        return any([hook.should_stop(loss) for hook in self.hooks])  # a list: every hook sees every loss

    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        rows = [row for row in (hook.on_epoch_end(epoch, model) for hook in self.hooks) if row]
        return {k: v for row in rows for k, v in row.items()} or None

    def after_validation(self, epoch: int, row: dict[str, Any]) -> None:
        for hook in self.hooks:
            hook.after_validation(epoch, row)

    def on_train_end(self, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.on_train_end(model)

    def parameters(self) -> list[nn.Parameter]:
        return [p for hook in self.hooks for p in hook.parameters()]

    def state_dict(self) -> dict[str, Any]:
        # keyed by position and class, so that a state never lands in another kind of hook
        states = {f"{i}.{type(hook).__name__}": hook.state_dict() for i, hook in enumerate(self.hooks)}
        return {key: state for key, state in states.items() if state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, hook in enumerate(self.hooks):
            key = f"{i}.{type(hook).__name__}"
            if key in state:
                hook.load_state_dict(state[key])


@dataclass
class TrainResult:
    """What happened: one row per epoch, and which epoch's weights were kept."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False


@torch.no_grad()
def evaluate_loss_accuracy(model: nn.Module, loader: DataLoader, accelerator: Accelerator,
                           task: Task | None = None) -> tuple[float, float]:
    """Mean loss and validation score of ``model`` on ``loader``: the task's (default: cross-entropy and
    accuracy of classification)."""
    task = task or Classification()
    model.eval()
    total_loss, count = 0.0, 0
    outputs, targets = [], []
    for batch, labels in loader:
        logits = model(**batch)
        if accelerator.num_processes > 1:  # every process scores the whole split (duplicates dropped)
            logits = accelerator.pad_across_processes(logits, dim=1) if logits.ndim > 2 else logits
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX) if labels.ndim > 1 \
                else labels
            logits, labels = accelerator.gather_for_metrics((logits, labels))
        total_loss += float(task.loss(logits, labels, reduction="sum"))
        count += len(labels)
        outputs.append(task.validation_outputs(logits, labels))
        targets.append(labels)
    score = task.score(*task.join_batches(outputs, targets)) if outputs else 0.0
    return total_loss / max(count, 1), score


def train_loop(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, train_loader: DataLoader,
               val_loader: DataLoader | None, config: LoopConfig, hooks: TrainHooks | None = None, *,
               checkpoints: Checkpoints | None = None, task: Task | None = None) -> TrainResult:
    """Train ``model`` with the task's loss (default: classification's cross-entropy); keep the weights of
    the best validation epoch (by the task's validation score, then the loss).

    The model's forward takes the batch dict of the backbone's ``collate`` and returns logits.
    Without a validation loader the last epoch's weights are kept. With ``checkpoints`` the loop
    writes a checkpoint when one is due (``Checkpoints.due``: by time, or by a step budget), checked
    after each optimizer step and at the end of each epoch, and with
    ``checkpoints.resume`` it continues from the last one: the resumed epoch replays the same batch
    order (``train_loader.set_epoch``; see ``features.EpochSampler``) and skips the batches already
    done, so on one process the result equals that of an uninterrupted run. Each checkpoint holds the
    hooks' own state too (``TrainHooks.state_dict``), put back before the first resumed batch. A hook's
    ``should_stop`` ends training after any batch (the learning-rate range test is this loop with a
    rising schedule and such a hook).

    Raises:
        TrainingError: the loss became NaN or infinite (the best weights so far are restored first,
            and the last good checkpoint stays on disk).
    """
    with accelerator_for(config.mixed_precision, config.grad_accum) as accelerator:
        return _train(accelerator, model, optimizer, scheduler, train_loader, val_loader, config,
                      hooks or TrainHooks(), checkpoints, task or Classification())


def _train(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
           train_loader: DataLoader, val_loader: DataLoader | None, config: LoopConfig, hooks: TrainHooks,
           checkpoints: Checkpoints | None, task: Task) -> TrainResult:
    if train_loader.batch_size and train_loader.batch_size % accelerator.num_processes:
        raise ConfigError(f"batch size {train_loader.batch_size} does not split evenly over "
                          f"{accelerator.num_processes} processes; use a multiple of {accelerator.num_processes}")
    prepared = accelerator.prepare(model, optimizer, train_loader, scheduler)
    model, optimizer, train_loader, scheduler = prepared
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    state = _resume(checkpoints, accelerator, model, optimizer, scheduler, hooks) or LoopState()
    batches_per_epoch = len(train_loader)
    show = config.progress and accelerator.is_local_main_process
    try:
        for epoch in range(state.epoch, config.epochs):
            if state.stopped_early:
                break
            hooks.on_epoch_start(epoch, accelerator.unwrap_model(model), optimizer)
            model.train()
            hooks.train_mode(model)
            train_loader.set_epoch(epoch)  # type: ignore[attr-defined]  # Accelerate's loader; order = f(seed, epoch)
            batches = accelerator.skip_first_batches(train_loader, state.step) if state.step else train_loader
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not show,
                       leave=False, initial=state.step, total=batches_per_epoch)
            stop = False
            for batch, labels in bar:
                with accelerator.accumulate(model):
                    loss = _loss(model, batch, labels, hooks, task)
                    value = float(loss.detach())
                    stop = hooks.should_stop(value)
                    if stop:
                        break
                    if not math.isfinite(value):
                        raise _bad_loss(value, epoch, state, accelerator.unwrap_model(model), checkpoints)
                    _optimize(loss, model, optimizer, scheduler, accelerator, config, hooks.parameters())
                state.step += 1
                state.running_loss += value * len(labels)
                state.seen += len(labels)
                bar.set_postfix(loss=f"{state.running_loss / max(state.seen, 1):.4f}")
                if accelerator.sync_gradients:
                    state.optimizer_steps += 1
                    if checkpoints and checkpoints.due(state.optimizer_steps) and state.step < batches_per_epoch:
                        _save(checkpoints, state, accelerator, model, optimizer, scheduler, hooks)
            scores = hooks.on_epoch_end(epoch, accelerator.unwrap_model(model)) or {}
            row = _end_epoch(state, epoch, model, optimizer, val_loader, accelerator, config, scores, task)
            hooks.after_validation(epoch, row)
            state.stopped_early = state.stopped_early or stop
            if checkpoints and checkpoints.due(state.optimizer_steps):
                _save(checkpoints, state, accelerator, model, optimizer, scheduler, hooks)
            if show:
                tqdm.write("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    finally:
        hooks.on_train_end(accelerator.unwrap_model(model))
    unwrapped = accelerator.unwrap_model(model)
    if state.best_state is not None:
        unwrapped.load_state_dict(state.best_state)
    else:
        state.best_epoch = len(state.history)
    unwrapped.eval()
    return TrainResult(history=state.history, best_epoch=state.best_epoch, stopped_early=state.stopped_early)


def _loss(model: nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor, hooks: TrainHooks,
          task: Task) -> torch.Tensor:
    logits = hooks.forward(model, batch)  # (B, C)
    loss = task.loss(logits, labels)
    extra = hooks.extra_loss(model, logits, labels)
    return loss if extra is None else loss + extra


def _optimize(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
              accelerator: Accelerator, config: LoopConfig, outside: list[nn.Parameter]) -> None:
    accelerator.backward(loss)
    if accelerator.num_processes > 1:  # DDP averages the model's gradients; these are the hooks' own
        for p in outside:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, "mean")
    if config.max_grad_norm and accelerator.sync_gradients:
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()  # Accelerate's wrappers step only at the end of an accumulation window
    scheduler.step()
    optimizer.zero_grad()


def _end_epoch(state: LoopState, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
               val_loader: DataLoader | None, accelerator: Accelerator, config: LoopConfig,
               scores: dict[str, float], task: Task) -> dict[str, Any]:
    """Validate, keep the best weights, decide on early stopping; the epoch's history row."""
    running = accelerator.reduce(torch.tensor([state.running_loss, float(state.seen)], device=accelerator.device),
                                 "sum")  # over all processes
    row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(running[0] / max(float(running[1]), 1.0)),
                           "lr": optimizer.param_groups[-1]["lr"], **scores}
    key: tuple[float, float] | None = None
    if val_loader is not None:
        score_key = f"val_{task.score_name}"
        row["val_loss"], row[score_key] = evaluate_loss_accuracy(model, val_loader, accelerator, task)
        key = (row[score_key], -row["val_loss"])
    elif config.monitor is not None:
        if config.monitor not in row:
            raise TrainingError(f"no {config.monitor!r} to monitor in the history row ({', '.join(row)})")
        key = (float(row[config.monitor]), -row["train_loss"])
    if key is not None:
        if state.best_key is None or key > state.best_key:
            state.best_key, state.bad_epochs, state.best_epoch = key, 0, epoch + 1
            weights = accelerator.unwrap_model(model).state_dict()
            state.best_state = {k: v.detach().clone() for k, v in weights.items()}
        else:
            state.bad_epochs += 1
        state.stopped_early = config.patience is not None and state.bad_epochs >= config.patience
    state.history.append(row)
    state.epoch, state.step, state.running_loss, state.seen = epoch + 1, 0, 0.0, 0
    return row


def _bad_loss(value: float, epoch: int, state: LoopState, model: nn.Module,
              checkpoints: Checkpoints | None) -> TrainingError:
    """The error for a NaN or infinite loss, after restoring the best weights so far."""
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    where = f"; {checkpoints.describe()}" if checkpoints else ""
    return TrainingError(f"loss became {value} in epoch {epoch + 1}; lower the learning rate or check the data "
                         f"(the best weights so far were kept{where})")


def _save(checkpoints: Checkpoints, state: LoopState, accelerator: Accelerator, model: nn.Module,
          optimizer: torch.optim.Optimizer, scheduler: Any, hooks: TrainHooks) -> None:
    unwrapped = accelerator.unwrap_model(model)
    # weights that overflowed would only be caught by the next loss: never let them replace a good checkpoint
    if accelerator.is_main_process and all(bool(torch.isfinite(p).all()) for p in unwrapped.parameters()):
        tensors = {"model": checkpoints.model_state(unwrapped), "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "hooks": hooks.state_dict()}
        if accelerator.scaler is not None:
            tensors["scaler"] = accelerator.scaler.state_dict()
        checkpoints.save(state, tensors)
    accelerator.wait_for_everyone()


def _resume(checkpoints: Checkpoints | None, accelerator: Accelerator, model: nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, hooks: TrainHooks) -> LoopState | None:
    """Load the last checkpoint into the prepared objects; None when there is nothing to resume."""
    loaded = checkpoints.load() if checkpoints and checkpoints.resume else None
    if loaded is None:
        return None
    state, tensors = loaded
    checkpoints.restore_model(accelerator.unwrap_model(model), tensors["model"], state)  # type: ignore[union-attr]
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    if accelerator.scaler is not None and "scaler" in tensors:
        accelerator.scaler.load_state_dict(tensors["scaler"])
    hooks.load_state_dict(tensors.get("hooks", {}))
    restore_torch_rng(tensors)  # last: loading the rest may draw random numbers
    return state


def retry_on_out_of_memory(attempt: Callable[[int], T], batch_size: int) -> T:
    """``attempt(batch_size)``, halving the batch size and retrying (with a warning) after each
    out-of-memory error of the CUDA, MPS, XPU or CPU allocator (Accelerate's test).

    ``attempt`` must start from scratch each time: rebuild loaders, optimizer and schedule.

    Raises:
        TrainingError: out of memory even with one sample per batch.
    """
    while True:
        try:
            return attempt(batch_size)
        except RuntimeError as exc:
            if not should_reduce_batch_size(exc):
                raise
            if batch_size <= 1:
                raise TrainingError("out of memory even with batch size 1; use a smaller backbone, shorter "
                                    "inputs or mixed precision") from exc
        # outside the except block, so that the failed attempt's tensors can be freed
        clear_device_cache(garbage_collection=True)
        warnings.warn(f"out of memory with batch size {batch_size}; retrying with {batch_size // 2}",
                      stacklevel=2)
        batch_size //= 2


def steps_per_epoch(loader: DataLoader, grad_accum: int) -> int:
    return max(1, math.ceil(len(loader) / max(grad_accum, 1)))
