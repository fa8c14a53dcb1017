"""Reports of a run: plots and a single self-contained HTML page."""

from transferkit.report.adaptation import embedding_plot, write_adaptation_report

__all__ = ["embedding_plot", "write_adaptation_report"]
