"""The figures of a run's report: learning curves, confusion matrix, per-class bars, reliability diagram,
feature map, score comparisons, label-efficiency curves, and a verification run's DET curve and score
histograms. Each returns a ``Figure`` (no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.report.plots import panels_figure, scatter_by_category

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Losses (left) and validation scores (right) per epoch, one line style per run."""
    fig, (loss_ax, score_ax) = panels_figure(2, panel_size=(5.5, 3.8))
    for i, (run, history) in enumerate(histories.items()):
        epochs = [row.get("epoch", n + 1) for n, row in enumerate(history)]
        keys = list(dict.fromkeys(k for row in history for k in row))
        prefix = f"{run}: " if len(histories) > 1 else ""
        for key in keys:
            values = [row.get(key) for row in history]
            if not all(isinstance(v, int | float) for v in values) or key in ("epoch", "lr"):
                continue
            ax = loss_ax if key.endswith("loss") else score_ax
            ax.plot(epochs, values, marker="o", markersize=3, linestyle=("-", "--", ":", "-.")[i % 4],
                    label=prefix + key)
    from matplotlib.ticker import MaxNLocator

    for ax, what in ((loss_ax, "loss"), (score_ax, "score")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows: true class), with the counts written in when it stays readable."""
    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(3.5 + 0.35 * len(labels), 14)
    fig = _figure((side + 1, side))
    ax = fig.subplots()
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    ticks = np.arange(len(labels))
    names = [str(n)[:18] for n in labels]
    ax.set_xticks(ticks, names, rotation=60 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center",
                  fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 15:
        for (r, c), value in np.ndenumerate(counts):
            ax.text(c, r, int(value), ha="center", va="center", fontsize=8,
                    color="white" if rates[r, c] > 0.5 else "black")
    return fig


def precision_recall_bars(per_class: Mapping[str, Mapping[str, float]]) -> Figure:
    """Precision and recall of each class (or label, or entity type) side by side."""
    names = list(per_class)
    x = np.arange(len(names))
    fig = _figure((max(5.0, min(0.45 * len(names) + 2, 16)), 3.8))
    ax = fig.subplots()
    ax.bar(x - 0.2, [per_class[n]["precision"] for n in names], width=0.4, label="precision")
    ax.bar(x + 0.2, [per_class[n]["recall"] for n in names], width=0.4, label="recall")
    ax.set_xticks(x, [str(n)[:18] for n in names], rotation=60 if len(names) > 4 else 0,
                  ha="right" if len(names) > 4 else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Equal-width confidence bins: per bin its mean confidence, accuracy and count, and the expected
    calibration error (the count-weighted mean gap between accuracy and confidence)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf, "accuracy": acc,
                     "count": int(mask.sum())})
        ece += mask.mean() * abs(acc - conf)
    return {"bins": rows, "ece": float(ece)}


def reliability(calibration: Mapping[str, Any]) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, and the bins' counts."""
    fig, (ax, count_ax) = panels_figure(2, panel_size=(4.5, 4.0))
    rows = calibration["bins"]
    centres = [(r["low"] + r["high"]) / 2 for r in rows]
    width = rows[0]["high"] - rows[0]["low"] if rows else 0.1
    ax.bar(centres, [r["accuracy"] for r in rows], width=width * 0.9, label="accuracy", alpha=0.8)
    ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o", color="C3", label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {calibration['ece']:.3f}")
    ax.legend(fontsize=7, loc="upper left")
    count_ax.bar(centres, [r["count"] for r in rows], width=width * 0.9, color="0.5")
    count_ax.set_xlim(0, 1)
    count_ax.set_xlabel("confidence")
    count_ax.set_ylabel("samples")
    return fig


def feature_map(coords: np.ndarray, colourings: Mapping[str, Sequence[Any]], *, method: str) -> Figure:
    """One scatter of the 2-D map per colouring (by class, by domain, ...)."""
    fig, axes = panels_figure(len(colourings), panel_size=(5.0, 4.5))
    for ax, (name, values) in zip(axes, colourings.items(), strict=True):
        scatter_by_category(ax, coords, values)
        ax.set_title(f"{method.upper()} of the features, by {name}")
    return fig


def predicted_vs_true(true: Sequence[float], predicted: Sequence[float]) -> Figure:
    """Regression: each prediction against its target, and the diagonal."""
    fig = _figure((4.8, 4.5))
    ax = fig.subplots()
    ax.scatter(true, predicted, s=10, alpha=0.6)
    low, high = float(min(min(true), min(predicted))), float(max(max(true), max(predicted)))
    ax.plot([low, high], [low, high], "k--", linewidth=1)
    ax.set_xlabel("target")
    ax.set_ylabel("prediction")
    ax.grid(alpha=0.3)
    return fig


def score_bars(values: Mapping[str, float], metric: str, *, zero_based: bool = True) -> Figure:
    """One bar per run (or candidate): their score side by side; ``zero_based`` False for scores of any sign."""
    names = list(values)
    fig = _figure((max(4.5, 1.1 * len(names) + 2), 3.6))
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), [values[n] for n in names], color=[f"C{i % 10}" for i in range(len(names))])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(names)), [n[:24] for n in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    if zero_based:
        ax.set_ylim(0, max(1.0, max(values.values(), default=1.0) * 1.1))
    ax.axhline(0, color="0.3", linewidth=0.8)
    return fig


def label_curve(points: Mapping[str, Sequence[tuple[int, float]]], metric: str) -> Figure:
    """Score against the number of labelled samples, one line per way of training (log scale)."""
    fig = _figure((6.0, 4.2))
    ax = fig.subplots()
    for i, (name, rows) in enumerate(points.items()):
        ax.plot([n for n, _ in rows], [s for _, s in rows], marker="o", color=f"C{i}", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training samples")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def det_curve(det: Mapping[str, Sequence[float]], eer: float) -> Figure:
    """Verification: false rejection against false acceptance rate on normal deviate scales (scikit-learn's
    ``DetCurveDisplay``), with the equal error rate marked."""
    from scipy.stats import norm
    from sklearn.metrics import DetCurveDisplay

    fig = _figure((5.0, 4.6))
    ax = fig.subplots()
    DetCurveDisplay(fpr=np.asarray(det["fpr"], float), fnr=np.asarray(det["fnr"], float)).plot(ax=ax)
    at = norm.ppf(np.clip(eer, norm.cdf(-2.9), norm.cdf(2.9)))  # inside the plot's limits (±3), also at 0
    ax.plot([-3, 3], [-3, 3], color="0.6", linestyle=":", linewidth=1)
    ax.plot([at], [at], "o", color="C3", label=f"EER {100 * eer:.2f} %")
    ax.set_xlabel("false acceptance rate")
    ax.set_ylabel("false rejection rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def score_histogram(trials: Mapping[str, Sequence[float]], threshold: float) -> Figure:
    """Verification: the similarity of same-identity and of different-identity trials (each as a share of its
    own trials, on shared bins), and the chosen threshold."""
    edges = np.asarray(trials["edges"], float)
    fig = _figure((6.0, 3.8))
    ax = fig.subplots()
    for key, colour, name in (("different", "C0", "different identity"), ("same", "C2", "same identity")):
        counts = np.asarray(trials[key], float)
        ax.stairs(counts / max(counts.sum(), 1.0), edges, fill=True, alpha=0.5, color=colour,
                  label=f"{name} ({int(counts.sum())})")
    ax.axvline(threshold, color="C3", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("similarity")
    ax.set_ylabel("share of trials")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
