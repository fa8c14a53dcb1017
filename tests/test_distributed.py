"""Data-parallel fitting under ``accelerate launch``: two CPU processes over gloo against one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import transferkit
from support import blob_images, invoke

# Two processes split each batch of 16 into two of 8: the optimizer steps are the same as on one process,
# but lenet's BatchNorm (trained from scratch) normalises each half with its own statistics and the
# processes draw their own dropout masks, so the numbers agree only up to that noise.
ACCURACY_TOLERANCE = 2 / 32  # two of the 32 validation images
FIT = ["--backbone", "lenet", "--from-scratch", "--strategy", "gradual", "--param", "unfreeze_every=1",
       "--epochs", "3", "--batch-size", "16", "--seed", "0"]


def _image_folder(root: Path, n_per_class: int, seed: int) -> Path:
    images, labels = blob_images(n_per_class, size=28, seed=seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i}.png")
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_fit_matches_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_TRACK", "0")  # no MLflow runs in the working folder; no report to draw
    monkeypatch.setenv("TRANSFERKIT_REPORT", "0")
    train = _image_folder(tmp_path / "train", 48, seed=0)
    val = _image_folder(tmp_path / "val", 16, seed=1)
    single = invoke("fit", train, "--val", val, "--out", tmp_path / "one", *FIT)
    assert single.exit_code == 0, single.output

    src = Path(transferkit.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "transferkit", "fit", str(train), "--val", str(val),
              "--out", str(tmp_path / "two"), *FIT]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("fitting lenet") == 2  # two processes ran ...
    assert done.stdout.count("wrote ") == 1  # ... and the main one alone wrote the run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "train", "two", "val"]  # no staging or checkpoints

    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(one) == len(two) == 3
    # the same schedule: one process's optimizer steps, so the same learning rate after each epoch
    assert [row["lr"] for row in two] == pytest.approx([row["lr"] for row in one], rel=1e-6)
    assert one[-1]["val_accuracy"] >= 0.9
    assert abs(two[-1]["val_accuracy"] - one[-1]["val_accuracy"]) <= ACCURACY_TOLERANCE
    assert two[-1]["train_loss"] < two[0]["train_loss"] / 10  # it learned, with every layer group open at the end
