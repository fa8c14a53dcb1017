"""Small real runs whose reports the tests of report/ read: image folders fitted through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

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
