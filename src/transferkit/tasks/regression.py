"""Regression: one number per sample, a linear head trained with mean squared error.

Targets are standardised with the training targets' mean and standard deviation (so that one learning
rate and one probe grid fit any unit); predictions are put back into the user's units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import DataError
from transferkit.evaluate import format_regression_metrics, regression_metrics
from transferkit.tasks.base import TASKS, ProbeFit, Task, fold_scaling, label_place, standardised_features


def parse_number(label: str, source: str = "the labels") -> float:
    """``label`` as a finite float.

    Raises:
        DataError: not a number, or not finite.
    """
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise DataError(f"{source}: regression needs numeric targets, but {label!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{source}: regression needs finite targets, not {label!r}")
    return value


@TASKS.register("regression", description="one number per sample: linear head, mean squared error on "
                "standardised targets, MSE/MAE/R²")
class Regression(Task):
    """Targets are ``(value - mean) / std`` of the training targets, ``(N,)``."""

    score_name = "r2"
    probabilistic = False

    def __init__(self) -> None:
        self.mean: float | None = None
        self.std: float | None = None

    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Regression:
        values = np.array([parse_number(v, label_place("the labels", origins, i)) for i, v in enumerate(labels)],
                          dtype=np.float64)
        if len(values) < 2 or float(values.std()) == 0.0:
            raise DataError(f"the regression targets are all {values[0] if len(values) else 'missing'}; "
                            "need at least two different values")
        self.mean, self.std = float(values.mean()), float(values.std())
        return self

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        assert self.mean is not None and self.std is not None
        values = np.array([parse_number(v, label_place(source, origins, i)) for i, v in enumerate(labels)],
                          dtype=np.float64)
        return ((values - self.mean) / self.std).astype(np.float32)  # (N,)

    @property
    def names(self) -> list[str]:
        return ["value"] if self.fitted else []

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        return F.mse_loss(outputs.float().squeeze(-1), targets.float(), reduction=reduction)  # (B, 1), (B,)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        from sklearn.metrics import r2_score

        if len(targets) < 2:
            return -float(self.loss(outputs, targets))
        return float(r2_score(targets.float().cpu().numpy(), outputs.float().squeeze(-1).cpu().numpy()))

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """Ridge regression on standardised features; its penalty chosen by efficient leave-one-out
        cross-validation on the training data (``RidgeCV``) unless ``c`` gives it (alpha = 1 / c)."""
        from sklearn.linear_model import Ridge, RidgeCV

        scaled, mean, scale = standardised_features(features)
        if c is None:
            ridge = RidgeCV(alphas=np.logspace(-2, 5, 15)).fit(scaled, targets)
            alpha = float(ridge.alpha_)
        else:
            alpha = 1.0 / c
            ridge = Ridge(alpha=alpha, random_state=seed).fit(scaled, targets)
        coef = np.atleast_2d(ridge.coef_)
        intercept = np.atleast_1d(ridge.intercept_)
        return fold_scaling(coef, intercept, mean, scale, {"probe_alpha": alpha})

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        self.check_fitted()
        assert self.mean is not None and self.std is not None
        return outputs[:, 0].astype(np.float64) * self.std + self.mean  # (N,) in the user's units

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64)

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        truth = np.array([parse_number(v, "evaluation data") for v in labels])
        return regression_metrics(truth, scores)

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        return format_regression_metrics(metrics)

    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        return {"value": float(scores)}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        return [f"{record['value']:.6g}"]
