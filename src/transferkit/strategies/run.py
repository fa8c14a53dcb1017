"""The one fine-tuning run: AdamW over parameter groups, warmup + cosine, signed checkpoints, the loop.

Every method that trains a backbone with the loop goes through ``fine_tuning_run``: the strategies
``finetune``, ``partial``, ``gradual``, ``lp_ft``, ``contrastive`` and ``lora``, and the deep
domain-adaptation methods. They differ in what trains and at which rate (the parameter groups),
in what they add to the loss (hooks) and in their defaults; the run itself is this one function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from transferkit.backbones.base import Backbone
from transferkit.checkpoint import Checkpoints, read_progress
from transferkit.data import Samples, samples_fingerprint
from transferkit.errors import ConfigError
from transferkit.heads import TransferModel
from transferkit.tasks import Classification, Task
from transferkit.train import (
    CombinedHooks,
    LoopConfig,
    TrainHooks,
    TrainResult,
    retry_on_out_of_memory,
    steps_per_epoch,
    train_loop,
)

# Peak learning rates that work for each modality's usual backbones with AdamW.
DEFAULT_LR = {"image": 3e-4, "text": 1e-4, "audio": 1e-4}
SCRATCH_LR = 1e-3
# The new head learns this much faster than the top of a pretrained backbone.
HEAD_LR_SCALE = 10.0

# Settings that change how a run is kept or shown, not what it computes: a resumed run may change
# them (the oracle samples of deep adaptation enter the signature by their number instead).
NOT_IN_SIGNATURE = frozenset({"progress", "use_cache", "oracle", "checkpoint_dir", "checkpoint_every", "resume",
                              "hooks"})


def fused_adamw(groups: list[dict[str, Any]]) -> bool:
    """Whether AdamW may use its fused kernel: every parameter floating point on a CPU or CUDA device. On
    a CPU it updates 22M parameters about five times faster than the per-tensor loop, which with small
    batches cost as much as the backward pass (Hugging Face's ``Trainer`` uses it by default)."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])


def default_lr(given: float | None, backbone: Backbone) -> float:
    """``given``, else the modality's fine-tuning rate for a pretrained backbone, ``SCRATCH_LR`` for a random one."""
    return given or (DEFAULT_LR[backbone.modality] if backbone.spec.pretrained else SCRATCH_LR)


def default_layer_decay(given: float | None, *, pretrained: bool) -> float:
    """0.8 per layer group for pretrained backbones; one rate everywhere when training from scratch."""
    return given if given is not None else (0.8 if pretrained else 1.0)


def default_freeze_bn(given: bool | None, *, pretrained: bool) -> bool:
    """Keep pretrained BatchNorm statistics; a random backbone must learn its own."""
    return given if given is not None else pretrained


def default_head_lr_scale(given: float, *, pretrained: bool) -> float:
    """``given`` for a pretrained backbone; from scratch, the head is no newer than the rest: 1."""
    return given if pretrained else 1.0


class FrozenBatchNormHooks(TrainHooks):
    """Train mode everywhere except BatchNorm, whose running statistics stay as pretrained."""

    def train_mode(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias")


def layerwise_param_groups(model: TransferModel, *, lr: float, layer_decay: float, train_last_k: int | None,
                           head_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: the head at ``lr * head_lr_scale``, layer group ``i`` of ``G`` (input side
    first) at ``lr * layer_decay ** (G - 1 - i)``; groups outside the last k are frozen.

    Raises:
        ConfigError: ``train_last_k`` is not between 1 and the number of layer groups.
    """
    groups = model.backbone.layer_groups()
    count = len(groups)
    if train_last_k is not None and not 1 <= train_last_k <= count:
        raise ConfigError(f"train_last_k={train_last_k} but backbone {model.backbone.spec.name!r} has "
                          f"{count} layer groups ({', '.join(n for n, _ in groups)})")
    first_trained = 0 if train_last_k is None else count - train_last_k
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    param_groups: list[dict[str, Any]] = []

    def add(named: list[tuple[str, nn.Parameter]], group_lr: float, label: str) -> None:
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                param_groups.append({"params": params, "lr": group_lr, "weight_decay": wd, "name": label})

    seen: set[int] = set()
    for index, (name, module) in enumerate(groups):
        named = [(n, p) for n, p in module.named_parameters() if id(p) not in seen]
        seen.update(id(p) for _, p in named)
        if index < first_trained:
            continue
        trainable = [(n, p) for n, p in named if p.dtype.is_floating_point]
        for _, p in trainable:
            p.requires_grad_(True)
        add(trainable, lr * layer_decay ** (count - 1 - index), name)
    add(list(model.head.named_parameters()), lr * head_lr_scale, "head")
    return param_groups


def settings_signature(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass that decide what a run computes (see ``NOT_IN_SIGNATURE``)."""
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in NOT_IN_SIGNATURE}


@dataclass
class RunSettings:
    """How one fine-tuning run trains, with every default already resolved.

    Attributes:
        lr: the base learning rate (the groups carry their own rates; this one is recorded).
        epochs: passes over the training samples.
        batch_size: samples per batch; halved after an out-of-memory error.
        warmup_ratio: share of the optimizer steps spent warming the rate up before cosine decay.
        seed: seeds initialisation, batch order and augmentation.
        patience: early-stopping patience on the validation split (None: never stop).
        grad_accum: batches per optimizer step.
        mixed_precision: Accelerate's precision name, or ``"auto"``.
        progress: show progress bars.
        monitor: without validation samples, the history column that picks the kept epoch.
        checkpoint_dir: where to checkpoint (None: nowhere).
        checkpoint_every: also checkpoint every this many optimizer steps (None: only by time, every
            ``checkpoint.CHECKPOINT_INTERVAL`` seconds).
        resume: continue from the checkpoint in ``checkpoint_dir``.
    """

    lr: float
    epochs: int
    batch_size: int
    warmup_ratio: float
    seed: int = 0
    patience: int | None = None
    grad_accum: int = 1
    mixed_precision: str = "no"
    progress: bool = True
    monitor: str | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every: int | None = None
    resume: bool = False


@dataclass
class RunResult:
    """The loop's result, the batch size that fitted in memory, and how many parameters trained."""

    result: TrainResult
    batch_size: int
    trainable_params: int


# () -> the optimizer's groups; also sets which parameters train (called once per attempt)
GroupsFn = Callable[[], list[dict[str, Any]]]
# (optimizer steps of the run, batch size) -> the run's hooks
HooksFn = Callable[[int, int], Sequence[TrainHooks]]


def fine_tuning_run(model: TransferModel, train: tuple[Samples, Sequence[Any]], settings: RunSettings, *,
                    param_groups: GroupsFn, hooks: HooksFn = lambda total, batch_size: (),
                    signature: dict[str, Any] | None = None, val: tuple[Samples, Sequence[Any] | None] | None = None,
                    modules: tuple[nn.Module, ...] = (), task: Task | None = None) -> RunResult:
    """Train ``model`` in place with the task's loss on ``train`` (samples, encoded targets) plus the hooks' terms.

    AdamW over ``param_groups()``, the rate warmed up linearly over ``warmup_ratio`` of the steps and
    then decayed on a cosine; ``train.train_loop`` keeps the best validation epoch (or the
    ``monitor``'s best, or the last). With ``checkpoint_dir`` each checkpoint is signed with
    ``signature`` plus the backbone, the data (sizes and a fingerprint of the contents, see
    ``data.samples_fingerprint``), the batch size and the hooks, so that a resume
    with other settings is refused. After an out-of-memory error the run starts again from the
    initial weights (of ``model`` and of the further trained ``modules``) at half the batch size; a
    run that had shrunk its batch resumes with the smaller one.

    Raises:
        ConfigError: resuming from a checkpoint written with other settings.
        TrainingError: the loss became NaN or infinite, or out of memory at batch size 1.
    """
    folder = settings.checkpoint_dir
    first_batch_size = settings.batch_size
    if folder is not None and settings.resume:
        first_batch_size = (read_progress(folder) or {}).get("signature", {}).get("batch_size", first_batch_size)
    initial = [{k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()} for m in (model, *modules)]
    loop = LoopConfig(epochs=settings.epochs, patience=settings.patience, grad_accum=settings.grad_accum,
                      mixed_precision=settings.mixed_precision, progress=settings.progress, monitor=settings.monitor)
    samples, ids = train

    def attempt(batch_size: int) -> RunResult:
        for module, weights in zip((model, *modules), initial, strict=True):
            module.load_state_dict(weights)  # an attempt that ran out of memory may have trained a little
        torch.manual_seed(settings.seed)
        objective = task or Classification()
        train_loader = objective.make_loader(samples, model.backbone, ids, train=True, batch_size=batch_size,
                                             seed=settings.seed)
        val_loader = None
        if val is not None and len(val[0]) > 0:
            val_loader = objective.make_loader(val[0], model.backbone, val[1], train=False, batch_size=batch_size)
        groups = param_groups()
        optimizer = torch.optim.AdamW(groups, fused=fused_adamw(groups))
        total = settings.epochs * steps_per_epoch(train_loader, settings.grad_accum)
        scheduler = get_cosine_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total), total)
        hook_list = list(hooks(total, batch_size))
        checkpoints = None
        if folder is not None:
            signed = {**(signature or {}), "batch_size": batch_size, "hooks": [type(h).__name__ for h in hook_list],
                      "backbone": model.backbone.spec.to_dict(), "train_size": len(samples),
                      "val_size": 0 if val is None else len(val[0]),
                      # the contents, not only the sizes: other data of the same size is another run
                      "train_data": samples_fingerprint(samples.items, ids),
                      "val_data": None if val is None else samples_fingerprint(val[0].items, val[1])}
            checkpoints = Checkpoints(folder, every=settings.checkpoint_every or None,
                                      resume=settings.resume and batch_size == first_batch_size,
                                      signature=json.loads(json.dumps(signed, default=repr)))
        result = train_loop(model, optimizer, scheduler, train_loader, val_loader, loop, CombinedHooks(hook_list),
                            checkpoints=checkpoints, task=task)
        return RunResult(result, batch_size, sum(p.numel() for group in groups for p in group["params"]))

    return retry_on_out_of_memory(attempt, first_batch_size)
