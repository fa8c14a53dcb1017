"""Classification metrics, as a JSON-serialisable dict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true: true class names.
        y_pred: predicted class names.
        classes: the class order used for per-class rows and the matrix (rows: true, columns: predicted).
    """
    labels = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {"labels": labels,
                             "matrix": np.asarray(confusion_matrix(y_true, y_pred, labels=labels)).tolist()},
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable summary."""
    lines = [f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   n={metrics['n']}"]
    width = max(len(name) for name in metrics["per_class"])
    lines.append(f"{'class':<{width}}  precision  recall  f1      support")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:.4f}     {row['recall']:.4f}  {row['f1']:.4f}  {row['support']}"
        )
    return "\n".join(lines)
