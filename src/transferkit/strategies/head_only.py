"""``head_only``: the backbone frozen, only the head trains, on the loop (the feature-extraction way for heads
that cannot be fitted in closed form: a detector's feature pyramid and box heads, an MLP).

It is ``finetune`` with one parameter group, the head's, at the head's rate there; the backbone's
BatchNorm statistics stay as pretrained, so its weights are the pretrained ones and the run directory
does not store them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from transferkit.heads import TransferModel
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.strategies.finetune import fine_tune


@dataclass
class HeadOnlyConfig:
    """No settings of its own: the loop's (``epochs``, ``lr``, ``batch_size``, ``patience``, ...)."""


def head_param_groups(model: TransferModel, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The head's parameters at ``lr`` (no decay on biases and norms); the backbone's are frozen."""
    model.backbone.requires_grad_(False)
    model.head.requires_grad_(True)
    named = list(model.head.named_parameters())
    decay = [p for n, p in named if p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if p.ndim <= 1 or n.endswith(".bias")]
    return [{"params": params, "lr": lr, "weight_decay": wd, "name": "head"}
            for params, wd in ((decay, weight_decay), (no_decay, 0.0)) if params]


@STRATEGIES.register("head_only", config=HeadOnlyConfig, description="train only the head on the loop, the backbone "
                     "frozen with its BatchNorm statistics (for detection: the FPN and the detector)")
def head_only(model: TransferModel, data: FitData, config: FitConfig, params: HeadOnlyConfig) -> StrategyOutcome:
    # the head learns at the rate it has in finetune (``lr * head_lr_scale``), so the two compare one to one
    outcome = fine_tune(model, data, replace(config, freeze_bn=True), params, head_lr_scale=config.head_lr_scale,
                        param_groups=lambda lr, _decay, scale: head_param_groups(model, lr * scale,
                                                                                 config.weight_decay))
    outcome.backbone_trained = False
    return outcome
