"""A screenshot of each task's report: small real runs fitted through the command line, their
``report.html`` opened in headless Chromium (Debian's ``chromium``, through playwright).

    nice -n 5 python benchmarks/report_screenshots.py --data ../shared/data

Writes ``benchmarks/screenshots/report_<name>.png`` (the top of each page, at most ``MAX_HEIGHT`` pixels)
and, for each, the list of figures the page holds in ``benchmarks/results/report_screenshots.json``. The
runs are small on purpose (2 shared CPU cores): their numbers are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_HEIGHT = 4000
WIDTH = 1100


TREE_GRID = 3  # the large aerial crop of images/trees is cut into TREE_GRID x TREE_GRID images


def tree_images(data: Path, work: Path) -> Path:
    """A box table of small detection images: the large tree crop cut into a grid (a box goes to the cell
    holding its centre, clipped to it) and the small image beside it, written under ``work/trees``."""
    from PIL import Image

    from transferkit.data.boxes import decode_boxes, read_boxes

    samples = read_boxes(data / "images" / "trees" / "annotations.csv")
    folder = work / "trees"
    folder.mkdir()
    lines = ["image_path,xmin,ymin,xmax,ymax,label"]
    for item, label in zip(samples.items, samples.labels or [], strict=True):
        image = Image.open(item).convert("RGB")
        width, height = image.size
        grid = TREE_GRID if min(width, height) >= 1000 else 1
        for row in range(grid):
            for col in range(grid):
                x0, y0 = col * width // grid, row * height // grid
                x1, y1 = (col + 1) * width // grid, (row + 1) * height // grid
                name = f"{Path(item).stem}_{row}{col}.png"
                image.crop((x0, y0, x1, y1)).save(folder / name)
                for bx0, by0, bx1, by1, kind in decode_boxes(label):
                    if x0 <= (bx0 + bx1) / 2 < x1 and y0 <= (by0 + by1) / 2 < y1:
                        cx0, cy0, cx1, cy1 = max(bx0, x0) - x0, max(by0, y0) - y0, min(bx1, x1) - x0, min(by1, y1) - y0
                        if cx1 - cx0 >= 2 and cy1 - cy0 >= 2:
                            lines.append(f"{name},{cx0:g},{cy0:g},{cx1:g},{cy1:g},{kind}")
    (folder / "boxes.csv").write_text("\n".join(lines) + "\n")
    return folder / "boxes.csv"


def runs(data: Path, work: Path) -> dict[str, list[str]]:
    """name -> the ``transferkit fit`` arguments of a small real run of that task and modality."""
    sst2 = work / "sst2_200.tsv"
    lines = (data / "text" / "sst2" / "train.tsv").read_text().splitlines()
    sst2.write_text("\n".join(lines[:201]) + "\n")  # the header and the first 200 phrases
    fsdd = work / "fsdd"
    for wav in sorted((data / "speech" / "fsdd" / "recordings").glob("*_jackson_*.wav"))[::4]:
        (fsdd / wav.name.split("_")[0]).mkdir(parents=True, exist_ok=True)
        os.symlink(wav, fsdd / wav.name.split("_")[0] / wav.name)
    wnut = work / "wnut_400.conll"
    sentences = (data / "text" / "ner" / "wnut16_train.conll").read_text().split("\n\n")
    wnut.write_text("\n\n".join(sentences[:400]) + "\n")
    return {
        "image_classification_probe": [str(data / "images" / "hymenoptera" / "train"), "--strategy", "linear_probe"],
        "text_classification_finetune": [str(sst2), "--task", "classification", "--strategy", "finetune",
                                         "--epochs", "2", "--max-length", "48"],
        "audio_classification_probe": [str(fsdd), "--task", "classification", "--backbone", "whisper_tiny_en",
                                       "--strategy", "linear_probe"],
        "ner_probe": [str(wnut), "--task", "ner", "--strategy", "linear_probe"],
        "detection_trees_head_only": [str(tree_images(data, work)), "--task", "detection", "--strategy", "head_only",
                                      "--epochs", "3", "--val-fraction", "0.3"],
    }


def screenshot(page_path: Path, png: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(page_path.as_uri(), wait_until="load")
        height = min(page.evaluate("document.body.scrollHeight"), MAX_HEIGHT)
        page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": WIDTH, "height": height}, full_page=True)
        plots = page.evaluate("Array.from(document.querySelectorAll('figure[data-plot]')).map(f => f.dataset.plot)")
        browser.close()
    return plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    from transferkit.safety import write_json

    out = ROOT / "benchmarks" / "screenshots"
    out.mkdir(exist_ok=True)
    found_path = ROOT / "benchmarks" / "results" / "report_screenshots.json"
    found = json.loads(found_path.read_text()) if found_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, fit_args in runs(args.data, work).items():
            if args.only and name not in args.only.split(","):
                continue
            run = work / name
            env = {**os.environ, "TRANSFERKIT_TRACK": "0"}
            subprocess.run([sys.executable, "-m", "transferkit", "fit", *fit_args, "--out", str(run), "--report"],
                           check=True, env=env)
            found[name] = screenshot(run / "report.html", out / f"report_{name}.png")
            print(name, found[name], flush=True)
            write_json(found_path, found)


if __name__ == "__main__":
    main()
