"""Metrics of each task (classification, multi-label, regression), as JSON-serialisable dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro-F1 averages over the classes present in ``y_true`` only: a class the evaluation data never
    contains has no recall to measure, and counting it as 0 would punish a perfect prediction. Such
    classes are listed under ``absent_classes`` (they keep their all-zero row in ``per_class``).

    Args:
        y_true: true class names.
        y_pred: predicted class names.
        classes: the class order used for per-class rows and the matrix (rows: true, columns: predicted).
    """
    labels = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = {str(name) for name in y_true}
    absent = [name for name in labels if str(name) not in present]
    averaged = [name for name in labels if str(name) in present] or labels
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=averaged, average="macro", zero_division=0)),
        "absent_classes": absent,
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
    if metrics.get("absent_classes"):
        lines.append("absent from the data, left out of macro-F1: " + ", ".join(metrics["absent_classes"]))
    width = max(len(name) for name in metrics["per_class"])
    lines.append(f"{'class':<{width}}  precision  recall  f1      support")
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:.4f}     {row['recall']:.4f}  {row['f1']:.4f}  {row['support']}"
        )
    return "\n".join(lines)


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Micro/macro F1, subset accuracy, Hamming loss and per-label precision/recall/F1/support.

    Args:
        y_true: true label indicators ``(N, L)``.
        y_pred: predicted label indicators ``(N, L)``.
        labels: the names of the ``L`` columns.
    """
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    return {
        "n": int(len(y_true)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "per_label": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Mean squared error, its root, mean absolute error and R² (None with fewer than two samples)."""
    mse = float(mean_squared_error(y_true, y_pred))
    return {
        "n": int(len(y_true)),
        "mse": mse,
        "rmse": mse**0.5,
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) >= 2 else None,
    }


def format_multilabel_metrics(metrics: dict[str, Any]) -> str:
    lines = [f"micro-F1 {metrics['micro_f1']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   subset accuracy "
             f"{metrics['subset_accuracy']:.4f}   Hamming loss {metrics['hamming_loss']:.4f}   n={metrics['n']}"]
    width = max(len("label"), *(len(name) for name in metrics["per_label"]))
    lines.append(f"{'label':<{width}}  precision  recall  f1      support")
    for name, row in metrics["per_label"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:.4f}     {row['recall']:.4f}  {row['f1']:.4f}  {row['support']}"
        )
    return "\n".join(lines)


def format_regression_metrics(metrics: dict[str, Any]) -> str:
    r2 = "-" if metrics["r2"] is None else f"{metrics['r2']:.4f}"
    return (f"MSE {metrics['mse']:.4f}   RMSE {metrics['rmse']:.4f}   MAE {metrics['mae']:.4f}   R² {r2}   "
            f"n={metrics['n']}")


def generation_metrics(references: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    """Exact match (after trimming spaces and case), mean ROUGE-L F1 (``rouge-score``, stemmed) and
    corpus chrF (``sacrebleu``, 0-100) of generated texts against the references."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for ref, pred in zip(references, predictions, strict=True)]
    exact = [ref.strip().casefold() == pred.strip().casefold() for ref, pred in zip(references, predictions,
                                                                                     strict=True)]
    chrf = sacrebleu.corpus_chrf(list(predictions), [list(references)]).score if references else 0.0
    return {"exact_match": float(np.mean(exact)) if exact else 0.0, "rouge_l": float(np.mean(rouge)) if rouge else 0.0,
            "chrf": float(chrf), "count": len(references)}
