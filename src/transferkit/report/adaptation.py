"""The domain-adaptation report: source and target before and after adaptation, in numbers and a picture."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.report.page import embedded_png
from transferkit.report.plots import panels_figure, save_png
from transferkit.safety import write_text


def _pca_2d(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both domains projected on the first two principal axes of their union (one shared projection)."""
    from sklearn.decomposition import PCA

    both = np.vstack([source, target])
    both = (both - both.mean(axis=0)) / np.maximum(both.std(axis=0), 1e-12)
    points = PCA(n_components=2, random_state=0).fit_transform(both)  # (N_s + N_t, 2)
    return points[: len(source)], points[len(source):]


def embedding_plot(path: str | Path, panels: dict[str, tuple[np.ndarray, np.ndarray]],
                   source_labels: np.ndarray | None = None, max_points: int = 1500, seed: int = 0) -> Path:
    """Write a PNG with one PCA scatter per panel, source as circles and target as crosses.

    Args:
        path: PNG to write.
        panels: title -> ``(source (N_s, D), target (N_t, D))``, e.g. ``{"before": ..., "after": ...}``.
        source_labels: ``(N_s,)`` class indices to colour the source by (target labels are not used).
        max_points: per domain, a random subset above this size keeps the plot readable.
    """
    rng = np.random.default_rng(seed)
    fig, axes = panels_figure(len(panels))
    for ax, (title, (source, target)) in zip(axes, panels.items(), strict=True):
        keep_s = np.sort(rng.permutation(len(source))[:max_points])
        keep_t = np.sort(rng.permutation(len(target))[:max_points])
        zs, zt = _pca_2d(source[keep_s], target[keep_t])
        colour = None if source_labels is None else np.asarray(source_labels)[keep_s]
        ax.scatter(zs[:, 0], zs[:, 1], c=colour, cmap=None if colour is None else "tab10", s=10, marker="o",
                   alpha=0.6, label="source")
        ax.scatter(zt[:, 0], zt[:, 1], c="black", s=10, marker="x", alpha=0.5, label="target")
        ax.set_title(title)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(loc="best")
    return save_png(fig, path, dpi=100)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_adaptation_report(folder: str | Path, summary: dict[str, Any], plot_name: str | None) -> Path:
    """Write ``report.html`` in ``folder`` from the ``adapt`` summary (the content of ``adapt.json``)."""
    folder = Path(folder)
    parts = [f"<h1>Domain adaptation: {html.escape(summary['method'])}</h1>",
             f"<p>source {html.escape(summary['source'])} ({summary['n_source']} samples) → target "
             f"{html.escape(summary['target'])} ({summary['n_target']} unlabelled samples); backbone "
             f"{html.escape(str(summary.get('backbone')))}.</p>"]
    selection = summary.get("selection")
    if selection is not None:
        parts.append(f"<h2>Label-free selection ({html.escape(selection['criterion'])})</h2>"
                     f"<p>chosen: <code>{html.escape(json.dumps(selection['params']))}</code>"
                     + (f"; oracle (with target labels, for comparison only): "
                        f"<code>{html.escape(json.dumps(selection['oracle_params']))}</code>"
                        if selection.get("oracle_params") is not None else "") + "</p>")
        rows = [[json.dumps(c["params"]), *(f"{c['scores'][k]:.4f}" if k in c["scores"] else "—"
                                            for k in ("dev", "iwv", "snd", "source_val", "target_accuracy"))]
                for c in selection["candidates"]]
        parts.append(_table(rows, ["params", "dev", "iwv", "snd", "source val acc", "target acc (oracle only)"]))
    history = summary.get("history")
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        parts.append("<h2>Training history</h2>")
        parts.append(_table([[f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                              for k in keys] for row in history], keys))
    accuracy = summary.get("accuracy", {})
    if accuracy:
        parts.append("<h2>Accuracy before and after</h2>")
        rows = [[name, *(f"{accuracy[name].get(k, float('nan')):.4f}" if k in accuracy[name] else "—"
                         for k in ("source_val", "target"))] for name in accuracy]
        parts.append(_table(rows, ["model", "held-out source", "target (--target-eval)"]))
    per_class = summary.get("per_class")
    if per_class:
        parts.append("<h2>Per-class target recall</h2>")
        names = list(next(iter(per_class.values())))
        rows = [[c, *(f"{per_class[m][c]['recall']:.3f}" for m in per_class)] for c in names]
        parts.append(_table(rows, ["class", *per_class]))
    if plot_name:  # embedded, so that the page alone renders anywhere
        parts.append("<h2>Source and target features before and after (PCA)</h2>"
                     + embedded_png(folder / plot_name, "source (circles, by class) and target (crosses) features"))
    style = "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px}</style>"
    path = folder / "report.html"
    write_text(path, f"<!doctype html><html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}"
               "</body></html>\n")
    return path
