"""``report.html`` of a run directory, and one page comparing several runs (``transferkit report``).

Common to every task: what was fitted (backbone, strategy, pretrained or from scratch, time), the
learning curves (``history.json``), the held-out metrics and a 2-D map of the features by class. The
task's own sections come from its view in ``REPORT_VIEWS`` (``report/views.py``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ArtifactError
from transferkit.report import charts
from transferkit.report.evidence import REPORT_FOLDER, Evidence, read_evidence
from transferkit.report.page import Figures, Section, table, write_page
from transferkit.report.views import view_for

REPORT = "report.html"
CHOICES = "choices.json"  # what fit's automatic default chose and why (auto/choose.py)
SOURCE_WORDS = {
    "validation": "the run's validation split",
    "cross-validation": "out-of-fold predictions of the probe (refitted at its chosen regularisation on 5 folds "
                        "of the training data; the linear probe keeps no validation split)",
    "training": "the training data itself (in-sample: the run kept no validation split), so these numbers are "
                "optimistic",
}


@dataclass
class RunRecord:
    """What the pages read of one run directory."""

    path: Path
    manifest: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    evidence: Evidence | None
    choices: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def task(self) -> str:
        task = self.manifest.get("task")
        return task.get("name", "classification") if isinstance(task, dict) else "classification"

    @property
    def pretrained(self) -> bool:
        return bool(self.manifest.get("backbone", {}).get("pretrained", True))

    def main_score(self) -> tuple[str, float, str] | None:
        """``(metric, value, where measured)``: the task's main metric on validation data, else on the evidence."""
        from transferkit.tasks import make_task

        name = make_task(self.task).score_name
        for metrics, where in ((self.metrics, "validation"),
                               (self.evidence.metrics if self.evidence else None,
                                self.evidence.source if self.evidence else "")):
            if metrics and isinstance(metrics.get(name), int | float):
                return name, float(metrics[name]), where
        return None


def read_run(run: str | Path) -> RunRecord:
    """A run directory's manifest, history, validation metrics and report evidence.

    Raises:
        ArtifactError: not a run directory, or unreadable files.
    """
    from transferkit.artifact import read_manifest

    run = Path(run)
    manifest = read_manifest(run)

    def optional(name: str) -> Any:
        path = run / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is corrupt: {exc}") from exc

    history = optional("history.json") or []
    metrics = (optional("metrics.json") or {}).get("validation")
    choices = optional(CHOICES)
    return RunRecord(run, manifest, history if isinstance(history, list) else [], metrics, read_evidence(run),
                     choices if isinstance(choices, dict) else None)


def _summary(record: RunRecord) -> str:
    m = record.manifest
    backbone = m.get("backbone", {})
    rows = [["task", record.task], ["backbone", backbone.get("name")],
            ["weights", "pretrained" if record.pretrained else "random (from scratch)"],
            ["strategy", m.get("strategy")], ["modality", m.get("modality")],
            ["classes", len(m.get("classes", []))], ["fit seconds", m.get("fit_seconds")]]
    return table(rows, ["", ""])


def _choices(choices: dict[str, Any]) -> str:
    """What the automatic default of ``fit`` chose and why (``RUN/choices.json``, written by ``auto/choose.py``)."""
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in choices.get("reasons", []))
    body = f"<p>chosen strategy: <b>{html.escape(str(choices.get('strategy')))}</b></p><ol>{reasons}</ol>"
    candidates = choices.get("candidates") or []
    keys = list(dict.fromkeys(k for c in candidates if isinstance(c, dict) for k in c))
    if keys:
        body += table([[c.get(k) if isinstance(c.get(k), int | float | str | None) else json.dumps(c.get(k))
                        for k in keys] for c in candidates], keys)
    return body


def _feature_map(evidence: Evidence, figures: Figures, method: str) -> Section | None:
    from transferkit.unsupervised.clustering import map_2d

    features = evidence.features
    if features is None or len(features) < 3:
        return None
    coords = map_2d(np.asarray(features, dtype=np.float32), method=method, seed=0)
    colourings = {"class": evidence.map_labels} if len(evidence.map_labels) == len(coords) else {
        "sample": ["sample"] * len(coords)}
    return Section("Feature map", figures.draw("feature_map", charts.feature_map, coords, colourings, method=method,
                                               caption=f"{method.upper()} of {len(coords)} held-out samples' "
                                                       "features"))


def run_sections(record: RunRecord, figures: Figures, *, map_method: str = "pca") -> list[Section]:
    """Every section of one run's page (also used, per run, on the comparison page)."""
    sections = [Section("The run", _summary(record))]
    if record.choices:
        sections.append(Section("Why this recipe (the automatic default)", _choices(record.choices)))
    if record.history:
        sections.append(Section("Learning curves", figures.draw(
            "learning_curves", charts.learning_curves, {record.name: record.history},
            caption="training loss, validation loss and score per epoch")))
    evidence = record.evidence
    if evidence is None:
        if record.metrics:
            flat = [(k, v) for k, v in record.metrics.items() if isinstance(v, int | float)]
            sections.append(Section("Validation metrics", table(flat, ["metric", "value"])))
        sections.append(Section("Predictions", "<p class='note'>this run directory holds no report evidence "
                                               "(it was written without a report)</p>"))
        return sections
    sections.append(Section("Where the predictions below come from",
                            f"<p>{html.escape(SOURCE_WORDS.get(evidence.source, evidence.source))}</p>"))
    sections += view_for(evidence.task).sections(evidence.rows, evidence.examples, figures)
    mapped = _feature_map(evidence, figures, map_method)
    if mapped is not None:
        sections.append(mapped)
    return sections


def write_run_report(run: str | Path, *, extra: Sequence[Section] = (), map_method: str = "pca") -> Path:
    """Write ``RUN/report.html`` (and its figures as PNG files in ``RUN/report/``); returns the page's path.

    Example:
        >>> write_run_report("runs/bees")  # after TransferEstimator(...).fit(...).save("runs/bees")
    """
    record = read_run(run)
    figures = Figures(record.path / REPORT_FOLDER)
    sections = [*run_sections(record, figures, map_method=map_method), *extra]
    return write_page(record.path / REPORT, f"transferkit run {record.name}", sections)


def write_comparison(runs: Sequence[str | Path], out: str | Path, *, map_method: str = "pca") -> Path:
    """One page comparing runs: their settings and main scores side by side, their learning curves on one
    plot, then each run's own sections. Figures go to ``OUT``'s folder, in ``<page name>_files/``."""
    records = [read_run(run) for run in runs]
    out = Path(out)
    figures = Figures(out.parent / f"{out.stem}_files")
    rows, scores, metric = [], {}, None
    for record in records:
        found = record.main_score()
        if found is not None:
            metric, value, where = found
            scores[record.name] = value
        rows.append([record.name, record.task, record.manifest.get("backbone", {}).get("name"),
                     "pretrained" if record.pretrained else "from scratch", record.manifest.get("strategy"),
                     record.manifest.get("fit_seconds"), None if found is None else found[1],
                     None if found is None else f"{found[0]} on {found[2]}"])
    body = table(rows, ["run", "task", "backbone", "weights", "strategy", "fit seconds", "score", "measured as"])
    if scores and metric is not None:
        body += figures.draw("scores", charts.score_bars, scores, metric, caption=f"{metric} per run")
    scratch = [r for r in records if not r.pretrained]
    if scratch and len(scratch) < len(records) and scores:
        best_pre = max((scores[r.name] for r in records if r.pretrained and r.name in scores), default=None)
        best_scratch = max((scores[r.name] for r in scratch if r.name in scores), default=None)
        if best_pre is not None and best_scratch is not None:
            body += (f"<p>transfer against from scratch: best pretrained run {best_pre:.4f}, best from-scratch run "
                     f"{best_scratch:.4f} ({best_pre - best_scratch:+.4f})</p>")
    sections = [Section("Runs side by side", body)]
    histories = {r.name: r.history for r in records if r.history}
    if histories:
        sections.append(Section("Learning curves", figures.draw("learning_curves", charts.learning_curves, histories,
                                                                caption="every run's curves")))
    for i, record in enumerate(records):
        own = Figures(figures.folder, prefix=f"run{i + 1}_")
        inner = "".join(f"<h3>{html.escape(s.title)}</h3>{s.body}" for s in run_sections(record, own,
                                                                                       map_method=map_method))
        sections.append(Section(f"Run {record.name}", f"<details open><summary>{html.escape(str(record.path))}"
                                                        f"</summary>{inner}</details>"))
    return write_page(out, f"transferkit: {len(records)} runs compared", sections)
