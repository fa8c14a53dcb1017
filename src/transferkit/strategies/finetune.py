"""Fine-tuning strategies: all layer groups or the last k (``finetune``, ``partial``), gradual unfreezing,
LP-FT and contrastive tuning, each one ``strategies.run.fine_tuning_run`` with its own groups and hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.data import Samples
from transferkit.errors import ConfigError
from transferkit.heads import TransferModel
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.strategies.regularizers import build_regularizers
from transferkit.strategies.run import (
    DEFAULT_LR,
    FrozenBatchNormHooks,
    RunSettings,
    default_freeze_bn,
    default_head_lr_scale,
    default_layer_decay,
    default_lr,
    fine_tuning_run,
    layerwise_param_groups,
    settings_signature,
)
from transferkit.train import TrainHooks

# (lr, layer_decay, head_lr_scale) -> optimizer parameter groups; also sets which parameters train
GroupBuilder = Callable[[float, float, float], list[dict[str, Any]]]


@dataclass
class FinetuneConfig:
    """Attributes:
    train_last_k: fine-tune only the last k layer groups and the head (None: all).
    cache_frozen: with ``train_last_k``, run the frozen layers once and train the last groups on their kept
        outputs (no augmentation; for backbones that can be cut, see ``backbones.split``).
    """

    train_last_k: int | None = None
    cache_frozen: bool = False


@STRATEGIES.register("finetune", config=FinetuneConfig, description="train all layer groups (or the last k) with "
                     "layer-wise learning rates, warmup + cosine, early stopping, best checkpoint kept")
def finetune(model: TransferModel, data: FitData, config: FitConfig, params: FinetuneConfig) -> StrategyOutcome:
    return fine_tune(model, data, config, params, head_lr_scale=config.head_lr_scale, train_last_k=params.train_last_k,
                     cache_frozen=params.cache_frozen)


@dataclass
class LPFTConfig:
    """Attributes:
    c: inverse L2 strength of the first stage's linear probe (None: chosen by cross-validation).
    train_last_k: the second stage fine-tunes only the last k layer groups and the head (None: all).
    cache_frozen: with ``train_last_k``, run the frozen layers once and train the last groups on their kept
        outputs (no augmentation; for backbones that can be cut, see ``backbones.split``).
    """

    c: float | None = None
    train_last_k: int | None = None
    cache_frozen: bool = False


@STRATEGIES.register("lp_ft", config=LPFTConfig, description="linear probe on cached features first, then fine-tune "
                     "everything from that head at half the learning rate (Kumar et al., ICLR 2022)")
def lp_ft(model: TransferModel, data: FitData, config: FitConfig, params: LPFTConfig) -> StrategyOutcome:
    from transferkit.strategies.linear_probe import LinearProbeConfig, linear_probe

    probe = linear_probe(model, replace(data, val=None, val_ids=None), config, LinearProbeConfig(c=params.c))
    backbone = model.backbone
    lr = (config.lr or DEFAULT_LR[backbone.modality]) / 2
    # the head already fits: it moves no faster than the top of the backbone
    outcome = fine_tune(model, data, replace(config, lr=lr), params, head_lr_scale=1.0,
                        train_last_k=params.train_last_k, cache_frozen=params.cache_frozen)
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


@dataclass
class ContrastiveConfig:
    """Attributes:
    loss: the regulariser the backbone is tuned with: ``supcon`` (supervised contrastive) or
        ``cosine_pairs`` (SetFit's pair loss on every pair of a batch).
    ce: the head's cross-entropy tunes the backbone too (False: the backbone learns from the contrastive
        term alone, as in SetFit; the head is refitted as a linear probe afterwards either way).
    weight: weight of the contrastive term.
    temperature: temperature of ``supcon``.
    c: inverse L2 strength of the final linear probe (None: chosen by cross-validation).
    train_last_k: tune only the last k layer groups (None: all).
    """

    loss: str = "supcon"
    ce: bool = True
    weight: float = 1.0
    temperature: float = 0.1
    c: float | None = None
    train_last_k: int | None = None

    def __post_init__(self) -> None:
        from transferkit.strategies.regularizers import CONTRASTIVE_LOSSES

        if self.loss not in CONTRASTIVE_LOSSES:
            raise ConfigError(f"unknown contrastive loss {self.loss!r}; choose from {', '.join(CONTRASTIVE_LOSSES)}")


@STRATEGIES.register("contrastive", config=ContrastiveConfig, description="fine-tune with a contrastive term on the "
                     "pooled features (supervised contrastive, or SetFit's pair loss), then refit the head as a linear "
                     "probe on the tuned features")
def contrastive(model: TransferModel, data: FitData, config: FitConfig, params: ContrastiveConfig) -> StrategyOutcome:
    from transferkit.strategies.linear_probe import LinearProbeConfig, linear_probe
    from transferkit.strategies.regularizers import CONTRASTIVE_LOSSES, REGULARIZERS

    if data.objective.name != "classification":
        raise ConfigError(f"the contrastive strategy pulls samples of one class together, so it fits classification "
                          f"only, not {data.objective.name}; use finetune or lp_ft")
    term = {"weight": params.weight, **({"temperature": params.temperature} if params.loss == "supcon" else {})}
    regularizers = {name: settings for name, settings in config.regularizers.items() if name not in CONTRASTIVE_LOSSES}
    regularizers[params.loss] = REGULARIZERS.get(params.loss).settings(term)
    hooks = () if params.ce else (HeadOnlyCrossEntropy(model),)
    outcome = fine_tune(model, data, replace(config, regularizers=regularizers), params,
                        head_lr_scale=config.head_lr_scale, train_last_k=params.train_last_k, extra_hooks=hooks)
    # the tuned features are not the pretrained ones: never read or write them in the feature cache
    probe = linear_probe(model, replace(data, val=None, val_ids=None), replace(config, use_cache=False),
                         LinearProbeConfig(c=params.c))
    outcome.info = {**outcome.info, **probe.info, "contrastive_ce": params.ce}
    return outcome


def fine_tune(model: TransferModel, data: FitData, config: FitConfig, params: Any, *, head_lr_scale: float,
              train_last_k: int | None = None, extra_hooks: tuple[TrainHooks, ...] = (),
              param_groups: GroupBuilder | None = None, cache_frozen: bool = False) -> StrategyOutcome:
    """The strategies' ``fine_tuning_run``: ``config``'s settings and their defaults, the
    configured regularisers and BatchNorm handling; the backbone is frozen again afterwards.

    ``params`` is the calling strategy's config (it signs the checkpoints with ``config``).
    ``param_groups`` decides what trains and at which rate (default: layer groups with layer-wise
    learning rates, the last ``train_last_k`` of them, see ``layerwise_param_groups``); other
    strategies (LoRA) pass their own. ``cache_frozen`` (with ``train_last_k``) runs the frozen layer groups
    once and trains the last ones on their kept outputs (``on_frozen_outputs``).

    Raises:
        ConfigError: ``cache_frozen`` without ``train_last_k``, with a backbone that cannot be cut, or with
            more kept outputs than ``MAX_KEPT_BYTES``.
    """
    if cache_frozen:
        return on_frozen_outputs(model, data, train_last_k, config,
                                 lambda top, top_data: fine_tune(top, top_data, config, params,
                                                                 head_lr_scale=head_lr_scale, extra_hooks=extra_hooks,
                                                                 param_groups=param_groups))
    backbone = model.backbone
    pretrained = backbone.spec.pretrained
    lr = default_lr(config.lr, backbone)
    layer_decay = default_layer_decay(config.layer_decay, pretrained=pretrained)
    epochs = config.epochs or 5
    freeze_bn = default_freeze_bn(config.freeze_bn, pretrained=pretrained)
    settings = RunSettings(lr=lr, epochs=epochs, batch_size=config.batch_size, warmup_ratio=config.warmup_ratio,
                           seed=config.seed, patience=config.patience, grad_accum=config.grad_accum,
                           mixed_precision=config.mixed_precision, progress=config.progress,
                           checkpoint_dir=Path(config.checkpoint_dir) if config.checkpoint_dir else None,
                           checkpoint_every=config.checkpoint_every, resume=config.resume)

    def layerwise() -> list[dict[str, Any]]:
        return layerwise_param_groups(model, lr=lr, layer_decay=layer_decay, train_last_k=train_last_k,
                                      head_lr_scale=default_head_lr_scale(head_lr_scale, pretrained=pretrained),
                                      weight_decay=config.weight_decay)

    def hooks(total: int, batch_size: int) -> list[TrainHooks]:
        return [*extra_hooks, *build_regularizers(model, config), *([FrozenBatchNormHooks()] if freeze_bn else []),
                *config.hooks]

    groups = layerwise if param_groups is None else (lambda: param_groups(lr, layer_decay, head_lr_scale))
    val = None if data.val is None else (data.val, data.val_ids)
    signature = {"config": settings_signature(config), "params": params, "head_lr_scale": head_lr_scale,
                 "classes": data.classes}
    run = fine_tuning_run(model, (data.train, data.train_ids), settings, param_groups=groups, hooks=hooks, val=val,
                          signature=signature, task=data.objective)
    for p in model.parameters():
        p.requires_grad_(False)
    result = run.result
    return StrategyOutcome(history=result.history, backbone_trained=True,
                           info={"lr": lr, "layer_decay": layer_decay, "epochs": epochs,
                                 "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                                 "freeze_bn": freeze_bn, "regularizers": list(config.regularizers),
                                 "batch_size": run.batch_size, "trainable_params": run.trainable_params,
                                 "total_params": sum(p.numel() for p in model.parameters())})


# the most memory the kept outputs of the frozen layers may take (``cache_frozen``)
MAX_KEPT_BYTES = 4 * 2**30


def on_frozen_outputs(model: TransferModel, data: FitData, train_last_k: int | None, config: FitConfig,
                      train: Callable[[TransferModel, FitData], StrategyOutcome]) -> StrategyOutcome:
    """``train`` the last ``train_last_k`` layer groups and the head on the kept outputs of the frozen ones.

    The backbone is cut (``Backbone.split_top``); its bottom runs once over the training and validation
    samples, in evaluation mode and without augmentation; ``train`` then fits a model made of the top (which
    shares its modules with the backbone) and the head, so ``model`` is trained in place.
    """
    from transferkit.features import frozen_outputs

    backbone = model.backbone
    if train_last_k is None:
        raise ConfigError("cache_frozen needs train_last_k: the number of last layer groups that train "
                          "(the others run once)")
    groups = backbone.layer_groups()
    if not 1 <= train_last_k < len(groups):
        raise ConfigError(f"cache_frozen needs train_last_k between 1 and {len(groups) - 1} for backbone "
                          f"{backbone.spec.name!r}, which has {len(groups)} layer groups, or nothing stays frozen")
    split = backbone.split_top(train_last_k)
    if split is None:
        raise ConfigError(f"backbone {backbone.spec.name!r} cannot be cut between its layers, so cache_frozen "
                          f"does not apply; leave it out to run the frozen layers on every batch")

    def kept(samples: Samples, max_bytes: float) -> Samples:
        states = frozen_outputs(split, backbone, samples, batch_size=config.batch_size, max_bytes=max_bytes,
                                progress=config.progress)
        return Samples(items=states, labels=samples.labels, modality=samples.modality, origins=samples.origins,
                       label_origins=samples.label_origins)

    kept_train = kept(data.train, MAX_KEPT_BYTES)
    left = MAX_KEPT_BYTES - sum(x.nbytes for x in kept_train.items)
    top_data = replace(data, train=kept_train, val=None if data.val is None else kept(data.val, left))
    top = TransferModel(split.top, model.head, output=model.output)
    outcome = train(top, top_data)
    outcome.info = {**outcome.info, "cache_frozen": True, "total_params": sum(p.numel() for p in model.parameters())}
    return outcome


@dataclass
class PartialConfig:
    """Attributes:
    train_last_k: how many layer groups (from the output side) train with the head (None: 2, or all if fewer).
    cache_frozen: run the frozen layers once and train the last groups on their kept outputs (no
        augmentation; for backbones that can be cut, see ``backbones.split``).
    """

    train_last_k: int | None = None
    cache_frozen: bool = False


@STRATEGIES.register("partial", config=PartialConfig, description="train only the last k layer groups and the head "
                     "(--param train_last_k=K, default 2)")
def partial(model: TransferModel, data: FitData, config: FitConfig, params: PartialConfig) -> StrategyOutcome:
    k = params.train_last_k if params.train_last_k is not None else min(2, len(model.backbone.layer_groups()))
    return fine_tune(model, data, config, params, head_lr_scale=config.head_lr_scale, train_last_k=k,
                     cache_frozen=params.cache_frozen)


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


@dataclass
class GradualConfig:
    """Attributes:
    unfreeze_every: epochs between two unfreezing steps.
    """

    unfreeze_every: int = 1

    def __post_init__(self) -> None:
        if self.unfreeze_every < 1:
            raise ConfigError(f"unfreeze_every must be at least 1, not {self.unfreeze_every}")


@STRATEGIES.register("gradual", config=GradualConfig, description="ULMFiT gradual unfreezing: one more layer group "
                     "every unfreeze_every epochs, with layer-wise learning-rate decay")
def gradual(model: TransferModel, data: FitData, config: FitConfig, params: GradualConfig) -> StrategyOutcome:
    # the optimizer holds every group from the start; frozen groups get no gradient, so AdamW skips them
    groups = len(model.backbone.layer_groups())
    config = replace(config, epochs=config.epochs or groups * params.unfreeze_every + 1)
    hook = GradualUnfreezing(model, params.unfreeze_every)
    outcome = fine_tune(model, data, config, params, head_lr_scale=config.head_lr_scale, extra_hooks=(hook,))
    outcome.info["unfreeze_every"] = params.unfreeze_every
    return outcome
