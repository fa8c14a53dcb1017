"""The clustering map: samples in two dimensions, coloured by cluster and, beside it, by true label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.report.page import Section, embedded_png, table, write_page
from transferkit.report.plots import panels_figure, save_png, scatter_by_category


def cluster_map_plot(path: str | Path, coords: np.ndarray, clusters: Sequence[Any], *,
                     true_labels: Sequence[Any] | None = None, title: str = "") -> Path:
    """Write a scatter plot of ``coords`` ``(N, 2)`` coloured by cluster (and by true label, when given) as PNG.

    Example:
        >>> cluster_map_plot("map.png", map_2d(features), clusterer.labels_, true_labels=labels)
    """
    panels = [("clusters", clusters)]
    if true_labels is not None:
        panels.append(("labels", true_labels))
    fig, axes = panels_figure(len(panels))
    for ax, (name, values) in zip(axes, panels, strict=True):
        scatter_by_category(ax, coords, values)
        ax.set_title(f"{title} {name}".strip())
    return save_png(fig, path)


def write_cluster_report(folder: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``report.html`` in a ``cluster --out`` folder: the clusters' sizes, the silhouette per k, the
    scores against the labels (when the data had any) and ``map.png`` (when written), embedded."""
    folder = Path(folder)
    rows = [["samples", summary["n"]], ["backbone", summary["backbone"]],
            ["k", f"{summary['k']} ({'chosen by silhouette' if summary.get('k_chosen') else 'given'})"],
            ["cluster sizes", ", ".join(map(str, summary["cluster_sizes"]))]]
    rows += [[f"against the labels: {key}", value] for key, value in summary.get("scores", {}).items()
             if isinstance(value, int | float)]
    sections = [Section("Clusters", table(rows, ["", ""]))]
    if summary.get("silhouette"):
        sections.append(Section("Silhouette per k", table(list(summary["silhouette"].items()), ["k", "silhouette"])))
    if (folder / "map.png").is_file():
        sections.append(Section("Map", embedded_png(folder / "map.png", "the samples in 2-D, by cluster and label")))
    return write_page(folder / "report.html", "transferkit cluster", sections)
