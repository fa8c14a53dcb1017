"""The learning-rate range test's plot: the loss curve, its smoothing and the suggested rate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.report.plots import save_png


def range_test_plot(result: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Write the curve, the smoothed curve and the suggested rate of a range test as a PNG; returns the path.

    ``result`` is an ``lr_finder.LRFinderResult`` (not imported: the finder imports this module to plot).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    lrs = np.asarray(result.lrs)
    ax.plot(lrs, result.losses, color="0.7", linewidth=0.8, label="loss per step")
    ax.plot(lrs, result.smoothed, color="C0", linewidth=2, label="smoothed")
    ax.axvline(result.suggestion, color="C3", linewidth=2, label=f"suggestion {result.suggestion:.2g}")
    for key, label, color in (("descent_midpoint", "descent midpoint", "C2"),
                              ("min_loss_over_10", "min-loss lr / 10", "C1")):
        value = result.candidates.get(key)
        if value is not None:
            ax.axvline(value, color=color, linestyle="--", linewidth=1, label=f"{label} {value:.2g}")
    ax.set_xscale("log")
    finite = [v for v in result.losses if math.isfinite(v)]
    low = min(min(result.smoothed), min(finite, default=min(result.smoothed)))
    # the divergent tail can be orders of magnitude above the rest; keep the informative part
    high = max(max(result.smoothed), result.initial_loss)
    ax.set_ylim(low - 0.05 * (high - low), high + 0.15 * (high - low))
    ax.set_xlabel("learning rate (base rate; parameter groups scale it)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test" + (" (stopped: diverged)" if result.diverged else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save_png(fig, path)
