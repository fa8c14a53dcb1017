"""Multi-label classification: any number of labels per sample, one sigmoid per label, binary cross-entropy.

Labels are written ``a|b`` in a table cell (or as a list in ``y`` or a JSONL field); an image or audio
folder gives a file several labels by holding it (a copy or a symlink) under several class folders.
A label is predicted when its probability is at least 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import DataError
from transferkit.evaluate import format_multilabel_metrics, multilabel_metrics
from transferkit.tasks.base import TASKS, ProbeFit, Task, fit_logistic, fold_scaling, label_place, standardised_features

SEPARATOR = "|"
THRESHOLD = 0.5


def split_labels(text: str) -> list[str]:
    """``"b|a| a"`` -> ``["a", "b"]``: the distinct non-blank names, sorted."""
    return sorted({part.strip() for part in text.split(SEPARATOR) if part.strip()})


def join_labels(names: Iterable[str]) -> str:
    """The canonical ``a|b`` string of a set of label names."""
    return SEPARATOR.join(sorted({str(n).strip() for n in names if str(n).strip()}))


def label_cell(value: Any) -> Any:
    """One sample's labels as the ``a|b`` string ``Samples`` keeps (a list of names is joined).

    Raises:
        DataError: a name that itself contains ``|``.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple | set | frozenset):
        names = [str(v) for v in value]
        bad = [n for n in names if SEPARATOR in n]
        if bad:
            raise DataError(f"label name {bad[0]!r} contains {SEPARATOR!r}, which separates labels")
        return join_labels(names)
    return value


@TASKS.register("multilabel", description="several labels per sample (a|b): one sigmoid per label, binary "
                "cross-entropy, micro/macro-F1")
class MultiLabel(Task):
    """Targets are ``(N, L)`` indicators over the sorted label names seen in training."""

    score_name = "micro_f1"

    def __init__(self, labels: Sequence[str] | None = None) -> None:
        self.labels: list[str] = list(labels or [])

    def prepare_labels(self, y: Any) -> Any:
        """Each sample's labels as ``a|b``: from a list (or set) of names, or a string already so written."""
        if y is None or isinstance(y, str):
            return y
        return [label_cell(value) for value in y]

    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> MultiLabel:
        names = sorted({name for text in labels for name in split_labels(text)})
        if len(names) < 2:
            raise DataError(f"found {len(names)} label name(s) {names}; multi-label data needs at least two")
        self.labels = names
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        from sklearn.preprocessing import MultiLabelBinarizer

        self.check_fitted()
        sets = [split_labels(text) for text in labels]
        unknown = sorted({n for names in sets for n in names} - set(self.labels))
        if unknown:
            first = next(i for i, names in enumerate(sets) if set(names) - set(self.labels))
            raise DataError(f"{label_place(source, origins, first)}: labels {unknown} were not seen in training "
                            f"(known: {self.labels})")
        return MultiLabelBinarizer(classes=self.labels).fit_transform(sets).astype(np.float32)  # (N, L)

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def state(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "threshold": THRESHOLD}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = [str(n) for n in state["labels"]]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        # mean over labels, then over (or summed across) the batch
        per_sample = F.binary_cross_entropy_with_logits(outputs.float(), targets.float(), reduction="none").mean(-1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        from sklearn.metrics import f1_score

        predicted = (outputs.float() >= 0).cpu().numpy()  # sigmoid >= 0.5
        return float(f1_score(targets.cpu().numpy() > 0.5, predicted, average="micro", zero_division=0))

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """One L2 logistic regression per label on standardised features (one-vs-rest), each with its
        own C chosen by cross-validated log-loss unless ``c`` is given. A label that is always (or never)
        present in training gets no weights and the bias of its smoothed frequency."""
        scaled, mean, scale = standardised_features(features)
        coef = np.zeros((len(self.labels), features.shape[1]))
        intercept = np.zeros(len(self.labels))
        chosen: dict[str, float | None] = {}
        for j, name in enumerate(self.labels):
            column = targets[:, j].astype(np.int64)
            positives = int(column.sum())
            folds = min(positives, len(column) - positives)
            if folds == 0:
                rate = (positives + 0.5) / (len(column) + 1.0)
                intercept[j], chosen[name] = np.log(rate / (1 - rate)), None
                continue
            coef_j, intercept_j, chosen[name] = fit_logistic(scaled, column, folds=folds, c=c, seed=seed)
            coef[j], intercept[j] = coef_j[0], intercept_j[0]
        return fold_scaling(coef, intercept, mean, scale, {"probe_c": chosen})

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return torch.sigmoid(torch.from_numpy(outputs).float()).numpy()  # (N, L) probabilities

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        predicted = np.empty(len(scores), dtype=object)
        for i, row in enumerate(scores):  # one list per sample (assigning a list of lists would make a 2-D array)
            predicted[i] = [self.labels[j] for j in np.flatnonzero(row >= THRESHOLD)]
        return predicted

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        truth = self.encode(labels, source="evaluation data").astype(np.int64)
        return multilabel_metrics(truth, (scores >= THRESHOLD).astype(np.int64), self.labels)

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        return format_multilabel_metrics(metrics)

    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        order = scores.argsort()[::-1][: max(1, top_k)]
        return {"labels": [self.labels[j] for j in np.flatnonzero(scores >= THRESHOLD)],
                "probabilities": {self.labels[j]: float(scores[j]) for j in order}}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        shown = "  ".join(f"{name}={p:.3f}" for name, p in record["probabilities"].items())
        return [join_labels(record["labels"]) or "-", shown]
