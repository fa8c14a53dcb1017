"""Linear probe: the backbone stays frozen; a logistic regression is fitted on its cached features."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.preprocessing import StandardScaler

from transferkit.data import Samples
from transferkit.features import extract_features
from transferkit.heads import TransferModel
from transferkit.strategies.base import FitConfig, FitData, StrategyOutcome, register_strategy


def fit_probe(features: np.ndarray, label_ids: np.ndarray, num_classes: int, *, c: float | None,
              seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Standardise, fit an L2 logistic regression, and fold the scaling into the weights.

    Returns:
        ``(weight (C, D), bias (C,), chosen_c)`` of a linear layer on the raw features.
    """
    scaler = StandardScaler().fit(features)
    scaled = scaler.transform(features)
    folds = int(np.bincount(label_ids, minlength=num_classes).min())
    if c is None and folds >= 2:
        # log-loss breaks the ties that accuracy leaves on few samples (which favour the strongest penalty)
        probe = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=min(5, folds), max_iter=2000,
                                     scoring="neg_log_loss", l1_ratios=(0.0,), use_legacy_attributes=False,
                                     random_state=seed).fit(scaled, label_ids)
        chosen = float(np.ravel(probe.C_)[0])
    else:
        chosen = 1.0 if c is None else c
        probe = LogisticRegression(C=chosen, max_iter=2000, random_state=seed).fit(scaled, label_ids)
    coef, intercept = probe.coef_, probe.intercept_
    if num_classes == 2:  # sklearn keeps one row for two classes: logit(1) - logit(0)
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    # Dead dimensions (all-MiniLM-L6-v2 has three whose values stay near 1e-32) carry no signal, but
    # dividing by their tiny spread would fold weights of 1e30 into the head: give them none.
    dead = scaler.scale_ <= 1e-6 * max(float(scaler.scale_.max()), 1e-12)
    scale = np.where(dead, 1.0, scaler.scale_)
    coef = np.where(dead, 0.0, coef)
    weight = coef / scale  # W x_scaled = (W / s) x - (W / s) mu
    bias = intercept - weight @ scaler.mean_
    return weight.astype(np.float32), bias.astype(np.float32), chosen


@register_strategy("linear_probe", uses_validation=False,
                   description="frozen backbone; logistic regression on cached features (C by cross-validation)")
def linear_probe(model: TransferModel, data: FitData, config: FitConfig) -> StrategyOutcome:
    samples, ids = data.train, list(data.train_ids)
    if data.val is not None and data.val_ids is not None:  # cross-validation replaces the split
        val = data.val
        samples = Samples(items=samples.items + val.items, labels=(samples.labels or []) + (val.labels or []),
                          modality=samples.modality, origins=samples.origins + val.origins)
        ids += list(data.val_ids)
    features = extract_features(model.backbone, samples, batch_size=config.batch_size,
                                use_cache=config.use_cache, progress=config.progress)
    weight, bias, chosen = fit_probe(features, np.asarray(ids), len(data.classes), c=config.probe_c,
                                     seed=config.seed)
    fc = model.head.fc
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight))
        fc.bias.copy_(torch.from_numpy(bias))
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return StrategyOutcome(history=[], backbone_trained=False, info={"probe_c": chosen})
