"""Small real runs whose reports the tests of report/ read: image folders and a box table fitted through the
command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import blob_image_folder, invoke

IMAGE_OPTIONS = ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32", "--report")


@pytest.fixture(scope="package")
def image_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"probe": RUN, "finetune": RUN}``: a linear probe and a 3-epoch fine-tune, each with its report."""
    folder = tmp_path_factory.mktemp("report_runs")
    data = blob_image_folder(folder / "data")
    runs = {"probe": folder / "probe", "finetune": folder / "finetune"}
    for args in (("--out", runs["probe"]),
                 ("--strategy", "finetune", "--epochs", "3", "--val-fraction", "0.3", "--out", runs["finetune"])):
        result = invoke("fit", data, *IMAGE_OPTIONS, *args)
        assert result.exit_code == 0, result.output
    return runs


@pytest.fixture(scope="package")
def detection_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch detector from scratch on 8 images of two boxed shapes, fitted with its report."""
    folder = tmp_path_factory.mktemp("detection_report")
    rng = np.random.default_rng(0)
    lines = ["image_path,xmin,ymin,xmax,ymax,label"]
    for index in range(8):
        pixels = (30 + rng.integers(0, 20, (80, 96, 3))).astype(np.uint8)
        for label, colour in (("square", (230, 210, 40)), ("block", (40, 120, 230))):
            size = int(rng.integers(14, 22))
            x, y = int(rng.integers(0, 96 - size)), int(rng.integers(0, 80 - size))
            pixels[y:y + size, x:x + size] = colour
            lines.append(f"{index}.png,{x},{y},{x + size},{y + size},{label}")
        Image.fromarray(pixels).save(folder / f"{index}.png")
    (folder / "boxes.csv").write_text("\n".join(lines) + "\n")
    run = folder / "run"
    result = invoke("fit", folder / "boxes.csv", "--out", run, "--task", "detection", *IMAGE_OPTIONS[:3],
                    "--epochs", "1", "--val-fraction", "0.5", "--image-size", "64", "--param", "task.tile_size=64",
                    "--param", "task.detector=fcos", "--param", "task.score_threshold=0", "--report")
    assert result.exit_code == 0, result.output
    return run
