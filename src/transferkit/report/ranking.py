"""The page of ``transferkit rank --out``: the candidates' scores as a table and one bar chart per score."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from transferkit.report import charts
from transferkit.report.page import Figures, Section, table, write_page


def write_rank_report(folder: str | Path, ranking: dict[str, Any]) -> Path:
    """Write ``report.html`` (figures also as PNG in ``report/``) from a ranking's ``to_dict()``."""
    folder = Path(folder)
    figures = Figures(folder / "report")
    rows = ranking["rows"]
    names = ranking["scores"]
    body = (f"<p>{len(rows)} candidates ranked by <b>{html.escape(ranking['sort_by'])}</b> on "
            f"{ranking['n_samples']} samples, {ranking['num_classes']} classes, in {ranking['seconds']:.1f}s "
            "(no training; higher is better)</p>"
            + table([[i + 1, r["candidate"], r["num_features"], *(r["scores"].get(s) for s in names),
                      round(r["seconds"], 1)] for i, r in enumerate(rows)],
                    ["rank", "candidate", "dim", *names, "seconds"]))
    body += "".join(f"<p class='note'>{html.escape(note)}</p>" for note in ranking.get("notes", []))
    plots = ""
    for score in names:
        values = {r["candidate"]: r["scores"][score] for r in rows if r["scores"].get(score) is not None}
        if values:
            plots += figures.draw(f"score_{score}", charts.score_bars, values, score, zero_based=False,
                                  caption=f"{score} per candidate")
    return write_page(folder / "report.html", "transferkit rank", [Section("Candidates", body),
                                                                   Section("Scores", plots)])
