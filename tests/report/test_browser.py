"""A real run's report opened in headless Chromium: every figure decodes, and the page logs no error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install -y chromium && python -m pip install playwright"


def open_page(page_path: Path) -> tuple[list[dict], list[str], str]:
    """``(images, problems, text)``: each image's alt text and decoded width, the console errors, page errors
    and failed requests, and the page's visible text."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => ({alt: i.alt, width: i.naturalWidth, "
                                   "plot: i.parentElement.dataset.plot || null}))")
            text = page.inner_text("body")
        finally:
            browser.close()
    return images, problems, text


@pytest.mark.skipif(CHROMIUM is None, reason=f"no chromium: {INSTALL}")
def test_the_report_of_a_real_run_renders_every_plot_without_errors(image_runs: dict[str, Path]) -> None:
    pytest.importorskip("playwright", reason=f"no playwright: {INSTALL}")
    run = image_runs["finetune"]
    images, problems, text = open_page(run / "report.html")
    assert problems == []
    plots = [image["plot"] for image in images if image["plot"]]
    assert sorted(plots) == sorted(p.name for p in (run / "report").glob("*.png"))
    assert {"learning_curves.png", "confusion_matrix.png", "per_class.png", "reliability.png",
            "feature_map.png"} <= set(plots)
    assert all(image["width"] > 0 for image in images)  # every figure and thumbnail decoded
    assert "Worst-predicted examples" in text and "expected calibration error" in text


@pytest.mark.skipif(CHROMIUM is None, reason=f"no chromium: {INSTALL}")
def test_a_detection_report_renders_its_ap_bars_and_drawn_boxes(detection_run: Path) -> None:
    pytest.importorskip("playwright", reason=f"no playwright: {INSTALL}")
    images, problems, text = open_page(detection_run / "report.html")
    assert problems == []
    plots = [image["plot"] for image in images if image["plot"]]
    assert sorted(plots) == sorted(p.name for p in (detection_run / "report").glob("*.png"))
    assert "ap_per_class.png" in plots and "boxes_1.png" in plots
    assert all(image["width"] > 0 for image in images)
    assert "Average precision" in text and "Boxes on the images found least of" in text
