"""Reports of a run: plots and a single self-contained HTML page."""

from transferkit.report.adaptation import embedding_plot, write_adaptation_report
from transferkit.report.clustering import cluster_map_plot
from transferkit.report.lr_finder import range_test_plot

__all__ = ["cluster_map_plot", "embedding_plot", "range_test_plot", "write_adaptation_report"]
