"""The plots of report/: PNG files of the expected shape, drawn without touching pyplot's global state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.lr_finder import LRFinderResult
from transferkit.report import cluster_map_plot, embedding_plot, range_test_plot


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        return image.size


def test_cluster_map_adds_a_label_panel_beside_the_clusters(tmp_path: Path) -> None:
    coords = np.random.default_rng(0).normal(size=(40, 2))
    clusters = [i % 3 for i in range(40)]
    alone = _png_size(cluster_map_plot(tmp_path / "alone.png", coords, clusters))
    both = _png_size(cluster_map_plot(tmp_path / "sub" / "both.png", coords, clusters,
                                      true_labels=["a" if i < 20 else "b" for i in range(40)]))
    assert both[1] == alone[1] and abs(both[0] - 2 * alone[0]) <= 2  # two panels of the same size


def test_embedding_plot_has_one_panel_per_entry(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(30, 5)), rng.normal(1.0, size=(20, 5))
    one = _png_size(embedding_plot(tmp_path / "one.png", {"before": (source, target)}))
    two = _png_size(embedding_plot(tmp_path / "two.png", {"before": (source, target), "after": (source, target)},
                                   source_labels=np.arange(30) % 2))
    assert abs(two[0] - 2 * one[0]) <= 2


def test_range_test_plot_writes_a_png_and_leaves_pyplot_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    lrs = np.geomspace(1e-5, 1.0, 30).tolist()
    losses = [2.0 - 0.05 * i for i in range(25)] + [3.0, 5.0, 9.0, float("inf"), float("nan")]
    result = LRFinderResult(lrs=lrs, losses=losses, smoothed=[min(v, 3.0) if np.isfinite(v) else 3.0 for v in losses],
                            bandwidth=0.5, initial_loss=2.0, suggestion=1e-2, rule="test",
                            candidates={"descent_midpoint": 1e-2, "min_loss_over_10": 3e-3}, diverged=True)
    before = plt.get_fignums()
    assert _png_size(range_test_plot(result, tmp_path / "curve.png"))[0] > 300
    assert plt.get_fignums() == before
