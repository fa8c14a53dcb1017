"""LoRA: low-rank adapters on a frozen backbone (Hu et al., ICLR 2022), through PEFT.

Each adapted layer ``W`` keeps its pretrained weights and gains a trainable update
``(alpha / r) * B A`` of rank ``r``; only these updates and the new head train. The backbone's
base weights (and its BatchNorm statistics) stay exactly as built from its spec, so a run
directory stores only the adapter and the head (``transferkit.artifact``).

Which layers are adapted is derived from the backbone's modules, for any source:

1. the attention query and value projections (``nn.Linear`` named ``query``/``value``,
   ``q_proj``/``v_proj``, ``q``/``v``, ..., or a fused ``qkv``), as in the LoRA paper: BERT, MiniLM,
   MPNet, ViT, Whisper, wav2vec2;
2. without attention (CNNs), every ``nn.Linear`` and every ungrouped plain ``nn.Conv2d``: the
   pointwise convolutions of timm's EfficientNets and MobileNets, the 3x3 and 1x1 convolutions of
   ResNets, ConvNeXt's MLPs. Depthwise convolutions are left out (few weights, one filter per
   channel), and so are convolution subclasses (see ``_adaptable_conv``).

Only layers inside the backbone's layer groups count (not a source-task classifier), and layers
whose smaller side is not above the rank are left out: a "low-rank" update would not be smaller
than the layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.errors import ConfigError
from transferkit.heads import TransferModel
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.strategies.finetune import fine_tune

# LoRA updates start at zero and move little per step: rates above full fine-tuning's work best.
DEFAULT_LR = {"image": 1e-3, "text": 5e-4, "audio": 1e-3}
DEFAULT_EPOCHS = 10
# The names transformers, timm and fairseq-style encoders give the attention projections that the
# LoRA paper adapts (W_q and W_v); ``qkv`` is timm's fused projection, ``q``/``v`` MPNet's (and T5's).
ATTENTION_PROJECTIONS = frozenset(
    {"query", "value", "q_proj", "v_proj", "q_lin", "v_lin", "query_proj", "value_proj", "qkv", "q", "v"}
)


@dataclass(frozen=True)
class LoraSettings:
    """The ``lora`` strategy's config: the adapter's shape and where it goes.

    Attributes:
        r: rank of each update ``B A``.
        alpha: the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter's input during training.
        target_modules: names of the layers to adapt (the last part of a module's dotted name, like
            ``query``, or the whole name); None: the backbone's ``lora_modules`` (a decoder's four attention
            projections), else the rule in the module docstring.
        train_last_k: adapt only layers in the last k layer groups (None: all).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    train_last_k: int | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"LoRA rank r must be at least 1, not {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"LoRA dropout must be in [0, 1), not {self.dropout}")


def _adaptable_conv(module: nn.Module) -> bool:
    """An ungrouped plain ``nn.Conv2d``. PEFT builds the adapter's convolutions with the layer's own
    class, kernel, stride and padding, which subclasses that pad in ``forward`` or take other
    constructor arguments (static "same" padding) do not survive; the zoo's EfficientNet-Lite builds its
    1x1 convolutions as plain ones for this reason."""
    return type(module) is nn.Conv2d and module.groups == 1


def _smaller_side(module: nn.Linear | nn.Conv2d) -> int:
    if isinstance(module, nn.Linear):
        return min(module.in_features, module.out_features)
    return min(module.in_channels, module.out_channels)


def layer_group_of_modules(backbone: Backbone) -> dict[str, int]:
    """The layer group index (input side first) of every module whose weight lies in a group."""
    group_of_param = {id(p): index for index, (_, group) in enumerate(backbone.layer_groups())
                      for p in group.parameters()}
    found: dict[str, int] = {}
    for name, module in backbone.named_modules():
        weight = getattr(module, "weight", None)
        if name and isinstance(weight, nn.Parameter) and id(weight) in group_of_param:
            found[name] = group_of_param[id(weight)]
    return found


def lora_targets(backbone: Backbone, *, rank: int, first_group: int = 0,
                 names: tuple[str, ...] | None = None) -> dict[str, int]:
    """The modules to adapt, by the rule in the module docstring (or by ``names``), with their layer group index.

    Args:
        backbone: the backbone, not yet adapted.
        rank: LoRA rank; layers whose smaller side is not above it are skipped.
        first_group: adapt only layers in this layer group or later (partial LoRA).
        names: adapt the layers with these names (last part of the dotted name, or the whole name)
            instead of those the rule picks.

    Returns:
        ``{dotted module name: layer group index}``, in module order; empty if nothing fits.
    """
    grouped = layer_group_of_modules(backbone)
    candidates = {name: module for name, module in backbone.named_modules()
                  if grouped.get(name, -1) >= first_group
                  and isinstance(module, nn.Linear | nn.Conv2d) and _smaller_side(module) > rank}
    if names is not None:
        return {name: grouped[name] for name in candidates if name in names or name.rsplit(".", 1)[-1] in names}
    attention = {name: grouped[name] for name, module in candidates.items()
                 if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in ATTENTION_PROJECTIONS}
    if attention:
        return attention
    return {name: grouped[name] for name, module in candidates.items()
            if isinstance(module, nn.Linear) or _adaptable_conv(module)}


def apply_lora(backbone: Backbone, targets: list[str], settings: LoraSettings) -> None:
    """Inject LoRA layers (PEFT's adapter ``default``) into ``backbone`` in place.

    Afterwards only the adapter's parameters require gradients; the module keeps its class and
    its ``forward_features``, and PEFT records the config as ``backbone.peft_config``.

    Raises:
        ConfigError: the backbone already carries an adapter (it comes from a LoRA run directory).
    """
    from peft import LoraConfig, inject_adapter_in_model

    if getattr(backbone, "peft_config", None):
        raise ConfigError(f"backbone {backbone.spec.name!r} already carries a LoRA adapter; fine-tune it with "
                          "'finetune', or start LoRA from the backbone that run was trained from")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets)
    inject_adapter_in_model(config, backbone)


def lora_param_groups(model: TransferModel, targets: dict[str, int], *, lr: float, layer_decay: float,
                      head_lr_scale: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: the adapters in layer group ``i`` of ``G`` at ``lr * layer_decay ** (G - 1 - i)``,
    the head at ``lr * head_lr_scale`` (no weight decay on its bias).

    Args:
        targets: the adapted modules and their layer group index (from ``lora_targets``).
    """
    names = [name for name, _ in model.backbone.layer_groups()]
    group_count = len(names)
    by_group: dict[int, list[nn.Parameter]] = {}
    for module_name, index in targets.items():
        layer = model.backbone.get_submodule(module_name)
        by_group.setdefault(index, []).extend(p for p in layer.parameters() if p.requires_grad)
    groups = [{"params": params, "lr": lr * layer_decay ** (group_count - 1 - index), "weight_decay": weight_decay,
               "name": names[index]} for index, params in sorted(by_group.items())]
    head = list(model.head.named_parameters())
    head_lr = lr * head_lr_scale
    groups.append({"params": [p for _, p in head if p.ndim > 1], "lr": head_lr, "weight_decay": weight_decay,
                   "name": "head"})
    groups.append({"params": [p for _, p in head if p.ndim <= 1], "lr": head_lr, "weight_decay": 0.0,
                   "name": "head"})
    return [g for g in groups if g["params"]]


@STRATEGIES.register("lora", config=LoraSettings, description="low-rank adapters (PEFT) on the attention "
                     "projections, or a CNN's linear and dense conv layers, of the frozen backbone, plus the head; the "
                     "run stores only the adapter")
def lora(model: TransferModel, data: FitData, config: FitConfig, params: LoraSettings) -> StrategyOutcome:
    """Fit LoRA adapters and the head with warmup + cosine and early stopping.

    ``params.train_last_k`` adapts only the last k layer groups and ``layer_decay`` lowers the adapters'
    rate towards the input (default 1.0: one rate). Regularisers apply as in fine-tuning (L2-SP
    pulls the adapters towards their start, where ``B = 0`` leaves the pretrained function).
    BatchNorm statistics always stay frozen, so the base weights are exactly the spec's and the
    adapter alone describes the change. Training runs through fine-tuning's ``fine_tune`` with the
    adapters and head as its parameter groups, so checkpoints, ``resume`` and out-of-memory retries
    work as they do there.

    Raises:
        ConfigError: ``freeze_bn=False``, ``train_last_k`` out of range, or no layer to adapt.
    """
    backbone = model.backbone
    if config.freeze_bn is False:
        raise ConfigError("lora keeps BatchNorm statistics frozen (the run stores only the adapter); "
                          "use freeze_bn=None or True, or the 'finetune' strategy")
    group_names = [name for name, _ in backbone.layer_groups()]
    count = len(group_names)
    if params.train_last_k is not None and not 1 <= params.train_last_k <= count:
        raise ConfigError(f"train_last_k={params.train_last_k} but backbone {backbone.spec.name!r} has "
                          f"{count} layer groups ({', '.join(group_names)})")
    first_group = 0 if params.train_last_k is None else count - params.train_last_k
    targets = lora_targets(backbone, rank=params.r, first_group=first_group,
                           names=params.target_modules or backbone.lora_modules)
    if not targets:
        wanted = "" if params.target_modules is None else f" named {', '.join(params.target_modules)}"
        raise ConfigError(f"backbone {backbone.spec.name!r} has no nn.Linear or plain nn.Conv2d{wanted} wider than "
                          f"rank {params.r} in layer groups {', '.join(group_names[first_group:])} for LoRA to "
                          "adapt; use 'finetune' or 'partial'")
    torch.manual_seed(config.seed)
    for p in backbone.parameters():
        p.requires_grad_(False)
    apply_lora(backbone, list(targets), params)
    model.head.requires_grad_(True)

    def adapters_and_head(lr: float, layer_decay: float, head_lr_scale: float) -> list[dict[str, Any]]:
        return lora_param_groups(model, targets, lr=lr, layer_decay=layer_decay, head_lr_scale=head_lr_scale,
                                 weight_decay=config.weight_decay)

    # the shared fine-tuning run: checkpoints and --resume, out-of-memory retries, regularisers
    config = replace(config, lr=config.lr or DEFAULT_LR[backbone.modality], epochs=config.epochs or DEFAULT_EPOCHS,
                     layer_decay=config.layer_decay if config.layer_decay is not None else 1.0, freeze_bn=True)
    outcome = fine_tune(model, data, config, params, head_lr_scale=config.head_lr_scale,
                        param_groups=adapters_and_head)
    # backbone_trained: its features are no longer the pretrained ones (never read them from the
    # cache); "adapter" tells the artifact that the adapter alone holds that change.
    outcome.info = {"adapter": "lora", **outcome.info, "lora_rank": params.r, "lora_alpha": params.alpha,
                    "lora_dropout": params.dropout, "lora_layers": len(targets),
                    "lora_targets": sorted({name.rsplit(".", 1)[-1] for name in targets})}
    return outcome
