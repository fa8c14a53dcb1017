"""Figure helpers shared by the plots: figures without pyplot's global state, and PNG files out.

Every plot of the package is drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, so writing
one changes no global matplotlib state (backend, current figure) of the program that calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.safety import atomic_write

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, not when transferkit is imported
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PANEL_SIZE = (5.5, 5.0)  # inches per panel of a row of scatter plots


def panels_figure(n_panels: int, *, panel_size: tuple[float, float] = PANEL_SIZE) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` axes side by side, and the axes from left to right."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel_size[0] * n_panels, panel_size[1]))
    axes = fig.subplots(1, n_panels, squeeze=False)
    return fig, list(axes[0])


def scatter_by_category(ax: Axes, coords: np.ndarray, values: Sequence[Any], *, legend_max: int = 20) -> None:
    """Scatter ``coords`` ``(N, 2)`` with one colour per distinct value (sorted), legend when it stays readable."""
    import matplotlib

    shown = np.asarray([str(v) for v in values])
    names = sorted(set(shown.tolist()))
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    for i, name in enumerate(names):
        mask = shown == name
        ax.scatter(coords[mask, 0], coords[mask, 1], s=8, color=cmap(i % cmap.N), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= legend_max:
        ax.legend(markerscale=2, fontsize=7, loc="best")


def save_png(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Lay out ``fig`` and write it to ``path`` as PNG (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return path
