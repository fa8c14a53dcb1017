"""Linear probe: the backbone stays frozen; the task's linear model (logistic regression per class or per
label, ridge regression for numbers) is fitted on its cached features and written into the head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transferkit.data import Samples
from transferkit.heads import TransferModel, set_linear_head
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.tasks import Classification


def fit_probe(features: np.ndarray, label_ids: np.ndarray, num_classes: int, *, c: float | None,
              seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The classification probe on class indices (``Classification.fit_probe``), for callers without class names.

    Returns:
        ``(weight (C, D), bias (C,), chosen_c)`` of a linear layer on the raw features.
    """
    fitted = Classification([str(i) for i in range(num_classes)]).fit_probe(features, label_ids, c=c, seed=seed)
    return fitted.weight, fitted.bias, fitted.info["probe_c"]


@dataclass
class LinearProbeConfig:
    """Attributes:
    c: inverse L2 strength of the probe (None: chosen by cross-validation).
    """

    c: float | None = None


@STRATEGIES.register("linear_probe", uses_validation=False, config=LinearProbeConfig,
                     description="frozen backbone; the task's linear model (logistic or ridge regression) on cached "
                     "features, regularisation by cross-validation")
def linear_probe(model: TransferModel, data: FitData, config: FitConfig,
                 params: LinearProbeConfig) -> StrategyOutcome:
    samples, targets = data.train, np.asarray(data.train_ids)
    if data.val is not None and data.val_ids is not None:  # cross-validation replaces the split
        val = data.val
        samples = Samples(items=samples.items + val.items, labels=(samples.labels or []) + (val.labels or []),
                          modality=samples.modality, origins=samples.origins + val.origins)
        targets = np.concatenate([targets, np.asarray(data.val_ids, dtype=targets.dtype)])
    features, targets = data.objective.probe_data(model.backbone, samples, targets, batch_size=config.batch_size,
                                                  use_cache=config.use_cache, progress=config.progress)
    fitted = data.objective.fit_probe(features, targets, c=params.c, seed=config.seed)
    set_linear_head(model.head, fitted.weight, fitted.bias)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return StrategyOutcome(history=[], backbone_trained=False, info=dict(fitted.info))
