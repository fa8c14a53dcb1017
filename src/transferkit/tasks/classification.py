"""Single-label classification: one class per sample, softmax head, cross-entropy."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import DataError
from transferkit.evaluate import classification_metrics, format_metrics
from transferkit.tasks.base import TASKS, ProbeFit, Task, fit_logistic, fold_scaling, label_place, standardised_features


def warn_near_duplicate_classes(classes: Sequence[str]) -> None:
    """Warn when class names differ only in letter case or surrounding spaces (``POS`` and ``pos``):
    they stay separate classes, which is rarely what the labeller meant."""
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(name.strip().casefold(), []).append(name)
    for names in groups.values():
        if len(names) > 1:
            warnings.warn(f"classes {' and '.join(map(repr, names))} differ only in case or spaces; they are "
                          "kept as separate classes (make the labels the same if they mean one class)", stacklevel=3)


@TASKS.register("classification", description="one class per sample: softmax head, cross-entropy, accuracy")
class Classification(Task):
    """Targets are class indices into the sorted class names seen in training."""

    score_name = "accuracy"

    def __init__(self, classes: Sequence[str] | None = None) -> None:
        self.classes: list[str] = list(classes or [])

    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Classification:
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise DataError(f"found only one class {classes[0]!r}; need at least two to classify" if classes
                            else "no labels to fit")
        warn_near_duplicate_classes(classes)
        self.classes = classes
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            first = next(i for i, v in enumerate(labels) if v not in index)
            raise DataError(f"{label_place(source, origins, first)}: labels {unknown} were not seen in training "
                            f"(known: {self.classes})")
        return np.array([index[v] for v in labels], dtype=np.int64)

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def state(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = [str(c) for c in state["classes"]]

    def split(self, labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from transferkit.data.split import stratified_split

        return stratified_split(labels, fraction, seed)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction=reduction)  # (B, C), (B,)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return int((outputs.argmax(-1) == targets).sum()) / max(len(targets), 1)

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """Standardise and fit an L2 logistic regression (``fit_logistic``) on the class indices."""
        num_classes = self.num_outputs()
        # fitted with the dead dimensions that the head then drops, as the first release did: its numbers stay
        scaled, mean, scale = standardised_features(features, zero_dead=False)
        folds = int(np.bincount(targets, minlength=num_classes).min())
        coef, intercept, chosen = fit_logistic(scaled, targets, folds=folds, c=c, seed=seed)
        if num_classes == 2:  # sklearn keeps one row for two classes: logit(1) - logit(0)
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return fold_scaling(coef, intercept, mean, scale, {"probe_c": chosen})

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(outputs).float(), dim=-1).numpy()  # (N, C) probabilities

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        return np.array(self.classes)[scores.argmax(axis=1)]

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        return classification_metrics(list(labels), self.predictions(scores).tolist(), self.classes)

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        return format_metrics(metrics)

    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        order = scores.argsort()[::-1][: max(1, top_k)]
        return {"label": self.classes[order[0]], "probabilities": {self.classes[i]: float(scores[i]) for i in order}}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        shown = "  ".join(f"{name}={p:.3f}" for name, p in record["probabilities"].items())
        return [record["label"], shown]
