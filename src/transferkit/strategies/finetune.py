"""Fine-tuning: all layer groups or the last k, with layer-wise learning rates, warmup + cosine,
early stopping on a validation split, and the best epoch's weights kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from transferkit.checkpoint import Checkpoints, read_progress
from transferkit.errors import ConfigError
from transferkit.features import make_loader
from transferkit.heads import TransferModel
from transferkit.strategies.base import FitConfig, FitData, StrategyOutcome, register_strategy
from transferkit.strategies.regularizers import build_regularizers
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

# (lr, layer_decay, head_lr_scale) -> optimizer parameter groups; also sets which parameters train
GroupBuilder = Callable[[float, float, float], list[dict[str, Any]]]


def default_layer_decay(given: float | None, *, pretrained: bool) -> float:
    """0.8 per layer group for pretrained backbones; one rate everywhere when training from scratch."""
    return given if given is not None else (0.8 if pretrained else 1.0)


def default_freeze_bn(given: bool | None, *, pretrained: bool) -> bool:
    """Keep pretrained BatchNorm statistics; a random backbone must learn its own."""
    return given if given is not None else pretrained


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


@register_strategy("finetune", description="train all layer groups (or the last k) with layer-wise "
                   "learning rates, warmup + cosine, early stopping, best checkpoint kept")
def finetune(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    return _finetune(model, data, config, head_lr_scale=config.head_lr_scale)


@register_strategy("lp_ft", description="linear probe on cached features first, then fine-tune everything "
                   "from that head at half the learning rate (Kumar et al., ICLR 2022)")
def lp_ft(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    from transferkit.strategies.linear_probe import linear_probe

    probe = linear_probe(model, replace(data, val=None, val_ids=None), config)
    backbone = model.backbone
    lr = (config.lr or DEFAULT_LR[backbone.modality]) / 2
    # the head already fits: it moves no faster than the top of the backbone
    outcome = _finetune(model, data, replace(config, lr=lr), head_lr_scale=1.0)
    outcome.info = {**probe.info, **outcome.info}
    return outcome


class HeadOnlyCrossEntropy(TrainHooks):
    """The head learns from the cross-entropy, the backbone does not: the head's input is detached.

    Regularisers on the head's input still see the backbone's features (they capture them first).
    """

    def __init__(self, model: TransferModel) -> None:
        self.head = model.head
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # registered here rather than once: a retry after running out of memory starts a new training
        if self.handle is None:
            self.handle = self.head.register_forward_pre_hook(lambda _module, args: (args[0].detach(), *args[1:]))

    def on_train_end(self, model: nn.Module) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


@register_strategy("contrastive", description="fine-tune with a contrastive term on the pooled features (supervised "
                   "contrastive, or SetFit's pair loss), then refit the head as a linear probe on the tuned features")
def contrastive(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    from transferkit.strategies.linear_probe import linear_probe
    from transferkit.strategies.regularizers import CONTRASTIVE_LOSSES

    if data.objective.name != "classification":
        raise ConfigError(f"the contrastive strategy pulls samples of one class together, so it fits classification "
                          f"only, not {data.objective.name}; use finetune or lp_ft")
    if config.contrastive_loss not in CONTRASTIVE_LOSSES:
        raise ConfigError(f"unknown contrastive loss {config.contrastive_loss!r}; choose from "
                          f"{', '.join(CONTRASTIVE_LOSSES)}")
    regularizers = tuple(r for r in config.regularizers if r not in CONTRASTIVE_LOSSES) + (config.contrastive_loss,)
    hooks = () if config.contrastive_ce else (HeadOnlyCrossEntropy(model),)
    outcome = _finetune(model, data, replace(config, regularizers=regularizers), head_lr_scale=config.head_lr_scale,
                        extra_hooks=hooks)
    # the tuned features are not the pretrained ones: never read or write them in the feature cache
    probe = linear_probe(model, replace(data, val=None, val_ids=None), replace(config, use_cache=False))
    outcome.info = {**outcome.info, **probe.info, "contrastive_ce": config.contrastive_ce}
    return outcome


def _finetune(model: TransferModel, data: FitData, config: FitConfig, *, head_lr_scale: float,
              extra_hooks: tuple[TrainHooks, ...] = (), param_groups: GroupBuilder | None = None) -> StrategyOutcome:
    """Train with the loop: checkpoints and resume, out-of-memory retries, regularisers, BatchNorm handling.

    ``param_groups`` decides what trains and at which rate (default: layer groups with layer-wise
    learning rates, see ``layerwise_param_groups``); other strategies (LoRA) pass their own.
    """
    backbone = model.backbone
    pretrained = backbone.spec.pretrained
    lr = config.lr or (DEFAULT_LR[backbone.modality] if pretrained else SCRATCH_LR)
    layer_decay = default_layer_decay(config.layer_decay, pretrained=pretrained)
    epochs = config.epochs or 5
    freeze_bn = default_freeze_bn(config.freeze_bn, pretrained=pretrained)
    loop = LoopConfig(epochs=epochs, patience=config.patience, grad_accum=config.grad_accum,
                      mixed_precision=config.mixed_precision, progress=config.progress)
    folder = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    first_batch_size = config.batch_size
    if folder is not None and config.resume:
        # a run that had to shrink its batch to fit in memory resumes with the smaller batch
        first_batch_size = (read_progress(folder) or {}).get("signature", {}).get("batch_size", first_batch_size)
    initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def layerwise(group_lr: float, decay: float, head_scale: float) -> list[dict[str, Any]]:
        # from scratch, the head is no newer than the rest: one rate for all
        return layerwise_param_groups(model, lr=group_lr, layer_decay=decay, train_last_k=config.train_last_k,
                                      head_lr_scale=head_scale if pretrained else 1.0,
                                      weight_decay=config.weight_decay)

    build_groups = param_groups or layerwise

    def attempt(batch_size: int) -> tuple[TrainResult, int, int]:
        model.load_state_dict(initial)  # an attempt that ran out of memory may have trained a little
        torch.manual_seed(config.seed)
        train_loader = make_loader(data.train, backbone, data.train_ids, train=True, batch_size=batch_size,
                                   seed=config.seed)
        val_loader = None
        if data.val is not None and len(data.val) > 0:
            val_loader = make_loader(data.val, backbone, data.val_ids, train=False, batch_size=batch_size)
        groups = build_groups(lr, layer_decay, head_lr_scale)
        optimizer = torch.optim.AdamW(groups)
        total = epochs * steps_per_epoch(train_loader, config.grad_accum)
        scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
        hook_list = [*extra_hooks, *build_regularizers(model, config)]
        if freeze_bn:
            hook_list.append(FrozenBatchNormHooks())
        checkpoints = None
        if folder is not None:
            signature = _run_signature(model, data, config, batch_size=batch_size, head_lr_scale=head_lr_scale,
                                       hooks=hook_list)
            checkpoints = Checkpoints(folder, every=config.checkpoint_every,
                                      resume=config.resume and batch_size == first_batch_size, signature=signature)
        result = train_loop(model, optimizer, scheduler, train_loader, val_loader, loop, CombinedHooks(hook_list),
                            checkpoints=checkpoints, task=data.objective)
        return result, batch_size, sum(p.numel() for group in groups for p in group["params"])

    result, batch_size, trainable = retry_on_out_of_memory(attempt, first_batch_size)
    for p in model.parameters():
        p.requires_grad_(False)
    return StrategyOutcome(history=result.history, backbone_trained=True,
                           info={"lr": lr, "layer_decay": layer_decay, "epochs": epochs,
                                 "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                                 "freeze_bn": freeze_bn, "regularizers": list(config.regularizers),
                                 "batch_size": batch_size, "trainable_params": trainable,
                                 "total_params": sum(p.numel() for p in model.parameters())})


# FitConfig fields that change how a run is kept, not what it computes: a resumed run may change them
_NOT_IN_SIGNATURE = ("progress", "use_cache", "checkpoint_dir", "checkpoint_every", "resume")


def _run_signature(model: TransferModel, data: FitData, config: FitConfig, *, batch_size: int,
                   head_lr_scale: float, hooks: list[TrainHooks]) -> dict[str, Any]:
    """What a checkpoint must have been written by to be resumed: the same settings, data sizes and backbone."""
    return {"config": {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_SIGNATURE},
            "batch_size": batch_size, "head_lr_scale": head_lr_scale, "hooks": [type(h).__name__ for h in hooks],
            "backbone": model.backbone.spec.to_dict(), "classes": data.classes, "train_size": len(data.train),
            "val_size": 0 if data.val is None else len(data.val)}


@register_strategy("partial", description="train only the last k layer groups and the head (k = --train-last-k, "
                   "default 2)")
def partial(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    k = config.train_last_k if config.train_last_k is not None else min(2, len(model.backbone.layer_groups()))
    return _finetune(model, data, replace(config, train_last_k=k), head_lr_scale=config.head_lr_scale)


class GradualUnfreezing(TrainHooks):
    """ULMFiT's schedule: the head and the top layer group first, one group more every N epochs."""

    def __init__(self, model: TransferModel, every: int) -> None:
        if every < 1:
            raise ConfigError(f"unfreeze_every must be at least 1, not {every}")
        self.groups = [list(module.parameters()) for _, module in model.backbone.layer_groups()]
        self.trainable = {id(p) for params in self.groups for p in params if p.is_floating_point()}
        self.every = every

    def unfrozen_groups(self, epoch: int) -> int:
        return min(len(self.groups), 1 + epoch // self.every)

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        first_open = len(self.groups) - self.unfrozen_groups(epoch)
        for index, params in enumerate(self.groups):
            for p in params:
                if id(p) in self.trainable:
                    p.requires_grad_(index >= first_open)


@register_strategy("gradual", description="ULMFiT gradual unfreezing: one more layer group per epoch "
                   "(--unfreeze-every), with layer-wise learning-rate decay")
def gradual(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    # the optimizer holds every group from the start; frozen groups get no gradient, so AdamW skips them
    groups = len(model.backbone.layer_groups())
    epochs = config.epochs or groups * config.unfreeze_every + 1
    config = replace(config, epochs=epochs, train_last_k=None)
    hook = GradualUnfreezing(model, config.unfreeze_every)
    outcome = _finetune(model, data, config, head_lr_scale=config.head_lr_scale, extra_hooks=(hook,))
    outcome.info["unfreeze_every"] = config.unfreeze_every
    return outcome
