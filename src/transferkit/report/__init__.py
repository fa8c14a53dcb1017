"""Reports of a run: plots and a single self-contained HTML page (see ``run_report`` and ``views``).

Importing the package registers every report view (``views``, and ``detection`` in its own module).
"""

from transferkit.report import detection  # noqa: F401  (registers the detection view)
from transferkit.report.adaptation import embedding_plot, write_adaptation_report
from transferkit.report.clustering import cluster_map_plot
from transferkit.report.lr_finder import range_test_plot
from transferkit.report.run_report import write_comparison, write_run_report
from transferkit.report.views import REPORT_VIEWS, ReportView

__all__ = ["REPORT_VIEWS", "ReportView", "cluster_map_plot", "embedding_plot", "range_test_plot",
           "write_adaptation_report", "write_comparison", "write_run_report"]
