"""What a command records besides its output: the report page and the MLflow run (``Recording``), and
``transferkit report``, which draws one page comparing run directories.

``--report/--no-report`` and ``--track/--no-track`` also read ``TRANSFERKIT_REPORT`` and
``TRANSFERKIT_TRACK`` (``0`` turns them off), so a test suite or a script turns them off once.
Neither can fail the run it records: the run's output is written before, and a failure is one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from transferkit.cli.options import OptionGroup, short_warnings

if TYPE_CHECKING:
    from transferkit.estimator import TransferEstimator


class ReportWarning(UserWarning):
    """The report page could not be written; the run itself is complete."""


@dataclass
class Tracking(OptionGroup):
    """The MLflow run a command logs besides its output."""

    track: Annotated[bool, typer.Option("--track/--no-track", envvar="TRANSFERKIT_TRACK",
                                        help="log params, metrics and artifacts to MLflow (MLFLOW_TRACKING_URI, "
                                             "default ./mlruns)")] = True

    def log(self, command: str, *, params: Mapping[str, Any], metrics: Mapping[str, Any] | None = None,
            history: Sequence[Mapping[str, Any]] = (), folder: Path | None = None) -> None:
        """Log the run to MLflow when --track is on (``transferkit.tracking.log_run``)."""
        if not self.track:
            return
        from transferkit.tracking import log_run

        log_run(command, params=params, metrics=metrics, history=history, folder=folder)


@dataclass
class Recording(Tracking):
    """The report page and the MLflow run a command writes besides its output."""

    report: Annotated[bool, typer.Option("--report/--no-report", envvar="TRANSFERKIT_REPORT",
                                         help="write report.html (and its figures as PNG) into the output")] = True

    def write_report(self, draw: Callable[[], Any]) -> None:
        """Call ``draw`` (which writes the page) when --report is on; a failure is a warning, not an error."""
        if not self.report:
            return
        try:
            path = draw()
        except Exception as exc:  # noqa: BLE001 - the run's output is already written and complete
            warnings.warn(f"the report could not be written ({type(exc).__name__}: {exc})", ReportWarning,
                          stacklevel=2)
            return
        if path is not None:
            typer.echo(f"report: {path}", err=True)


def fit_report(clf: TransferEstimator, run: Path) -> Path:
    """Store the fitted estimator's report evidence in ``run`` and write ``run/report.html``."""
    from transferkit.report.evidence import gather, write_evidence
    from transferkit.report.run_report import write_run_report

    evidence = gather(clf, seed=int(clf.seed))
    if evidence is not None:
        write_evidence(run, evidence)
    return write_run_report(run)


def run_metrics(clf: TransferEstimator, run: Path) -> dict[str, Any]:
    """What MLflow records of a fit: its time, the validation metrics and, when the report stored them, the
    metrics on the report's held-out rows (named by where they come from, e.g. ``cross-validation.accuracy``)."""
    from transferkit.report.evidence import read_evidence

    metrics: dict[str, Any] = {"fit_seconds": clf.fit_seconds_, "validation": clf.validation_metrics_}
    evidence = read_evidence(run)
    if evidence is not None and evidence.source != "validation":
        metrics[evidence.source] = evidence.metrics
    return metrics


def report(
    runs: Annotated[list[Path], typer.Argument(help="run directories written by fit (or adapt's OUT/model)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="the page to write (default: RUN/report.html "
                                                                 "for one run, report.html for several)")] = None,
    map_method: Annotated[str, typer.Option("--map", help="2-D feature map: pca or tsne")] = "pca",
) -> None:
    """Write a self-contained HTML page for one run, or one page comparing several runs (scores side by
    side, from-scratch against pretrained, learning curves on one plot, then each run's sections).

    Every figure is embedded in the page and also written as a PNG file (RUN/report/ for one run, the
    page's NAME_files/ folder for a comparison).
    """
    from transferkit.errors import ConfigError
    from transferkit.report.run_report import REPORT, write_comparison, write_run_report

    short_warnings()
    if map_method not in ("pca", "tsne"):
        raise ConfigError(f"--map must be pca or tsne, not {map_method!r}")
    if len(runs) == 1 and out is None:
        written = write_run_report(runs[0], map_method=map_method)
    else:
        written = write_comparison(runs, out or Path(REPORT), map_method=map_method)
    typer.echo(f"wrote {written}")
