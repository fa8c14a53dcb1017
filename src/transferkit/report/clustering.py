"""The clustering map: samples in two dimensions, coloured by cluster and, beside it, by true label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
