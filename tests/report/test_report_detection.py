"""The detection view of a run's report: AP per class and overall, and true and found boxes drawn on the
images found least of, embedded in report.html and written as PNG files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.report.detection import DRAWN, match_boxes
from transferkit.report.evidence import read_evidence


def _embedded_plots(page: Path) -> list[str]:
    return re.findall(r"<figure data-plot='([^']+)'><img alt='[^']*' src='data:image/png;base64,", page.read_text())


def test_found_boxes_match_true_ones_of_their_class_once_best_score_first() -> None:
    true = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    found = np.array([[1, 1, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    # two found boxes overlap the first true box: only one counts; the third is of another class
    assert match_boxes(true, ["a", "b"], found, ["a", "a", "a", "a"], np.array([0.9, 0.8, 0.7, 0.6])) == 1
    assert match_boxes(true, ["a", "b"], found, ["a", "a", "b", "b"], np.array([0.9, 0.8, 0.7, 0.6])) == 2
    assert match_boxes(true, ["a", "b"], np.zeros((0, 4)), [], np.zeros(0)) == 0


def test_a_detection_report_shows_ap_per_class_and_drawn_boxes(detection_run: Path) -> None:
    evidence = read_evidence(detection_run)
    assert evidence is not None and evidence.source == "validation" and evidence.task == "detection"
    rows = evidence.rows
    assert rows["class_boxes"] == {"block": 4, "square": 4} and len(rows["images"]) == 4
    assert all(0 <= r["matched"] <= min(r["boxes"], r["found"]) for r in rows["images"])
    plots = _embedded_plots(detection_run / "report.html")
    drawn = [p for p in plots if p.startswith("boxes_")]
    assert plots[plots.index("ap_per_class.png") + 1:] == drawn  # after the AP bars, the drawn images
    assert 1 <= len(drawn) <= DRAWN and "feature_map.png" not in plots  # no one class per image to colour by
    assert sorted(p.name for p in (detection_run / "report").glob("*.png")) == sorted(plots)
    page = (detection_run / "report.html").read_text()
    assert "mAP@[.5:.95]" in page and "<td>block</td>" in page and "<td>square</td>" in page
    assert "Boxes on the images found least of" in page and "http" not in page
    # the worst images come first, and a drawn image is the image with its boxes on it, not a blank plot
    recalls = [e["recall"] for e in evidence.examples]
    assert recalls == sorted(recalls) and len(evidence.examples[0]["true_boxes"]) == 2
    png = np.asarray(Image.open(detection_run / "report" / "boxes_1.png").convert("RGB"), dtype=float)
    assert png.std() > 20 and (np.abs(png - [26, 152, 80]).sum(axis=2) < 40).sum() > 50  # green true boxes
