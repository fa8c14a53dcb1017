"""A fit killed mid-way and continued with ``--resume`` ends exactly as an uninterrupted fit does.

The killed fit runs in a subprocess that dies with ``os._exit(137)`` (no cleanup, like SIGKILL)
right after its N-th checkpoint was written, so the test is deterministic and not timing-dependent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import support
from support import invoke
from transferkit import TransferClassifier, load
from transferkit.checkpoint import checkpoint_folder, read_progress
from transferkit.errors import ConfigError

DIE_AFTER_CHECKPOINTS = """
import os
import sys

from transferkit.checkpoint import Checkpoints
from transferkit.cli import app

save, saved = Checkpoints.save, []


def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    saved.append(1)
    if len(saved) == int(sys.argv[1]):
        os._exit(137)  # no finally blocks, no atexit: as abrupt as SIGKILL


Checkpoints.save = save_then_die
app(sys.argv[2:])
"""


def fit_and_die(tmp_path: Path, checkpoints: int, *args: object) -> subprocess.CompletedProcess:
    script = tmp_path / "die_after_checkpoints.py"
    script.write_text(DIE_AFTER_CHECKPOINTS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(script), str(checkpoints), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)


def reference_and_killed(tmp_path: Path, args: list, checkpoints: int, *, stage: str = "") -> tuple[Path, Path, dict]:
    """An uninterrupted run of the command ``args`` (``reference``) and the same run killed after its
    ``checkpoints``-th checkpoint (``run``, not written), with the killed run's loop progress from
    ``OUT.checkpoints/`` (``stage``: the sub-folder of one stage of a multi-stage run)."""
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert invoke(*args, "--out", reference).exit_code == 0
    assert not checkpoint_folder(reference).exists()
    killed = fit_and_die(tmp_path, checkpoints, *args, "--out", run)
    assert killed.returncode == 137, killed.stderr
    assert not run.exists()
    return reference, run, read_progress(checkpoint_folder(run) / stage)["loop"]  # type: ignore[index]


def assert_same_run(run: Path, reference: Path, inputs: list | None,
                    files: tuple[str, ...] = ("head.safetensors", "backbone.safetensors")) -> None:
    """Same history, validation metrics, weights and (given ``inputs``) predictions."""
    for name in ("history.json", "metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text()), name
    for name in files:
        weights, expected = load_file(run / name), load_file(reference / name)
        assert weights.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-7, msg=f"{name}: {key}")
    if inputs is not None:
        np.testing.assert_allclose(load(run).predict_proba(inputs), load(reference).predict_proba(inputs),
                                   rtol=0, atol=1e-7)


def test_finetune_killed_mid_epoch_resumes_to_the_same_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(12, seed=0)
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in zip(texts, labels, strict=True)))
    args = ["fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "finetune", "--epochs", 3,
            "--batch-size", 4, "--lr", "1e-3", "--checkpoint-every", 2, "--seed", 1]
    # 6 batches per epoch: checkpoints after optimizer steps 2, 4, 6 (end of epoch 1) and 8
    reference, run, loop = reference_and_killed(tmp_path, args, 4)
    assert (loop["epoch"], loop["step"]) == (1, 2)

    fresh = invoke(*args, "--out", run)
    assert fresh.exit_code == 2 and "--resume" in fresh.stderr
    other = invoke(*args[:-1], 2, "--out", run, "--resume")
    assert other.exit_code == 2 and "differs in config.seed" in other.stderr

    resumed = invoke(*args, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert not checkpoint_folder(run).exists()
    assert_same_run(run, reference, support.sentiment_texts(6, seed=1)[0])


def test_lora_killed_mid_epoch_resumes_to_the_same_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(12, seed=0)
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in zip(texts, labels, strict=True)))
    args = ["fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "lora", "--epochs", 2,
            "--batch-size", 4, "--checkpoint-every", 2]
    reference, run, loop = reference_and_killed(tmp_path, args, 4)  # 2 batches into epoch 2
    assert (loop["epoch"], loop["step"]) == (1, 2)

    resumed = invoke(*args, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(run, reference, None, files=("head.safetensors", "adapter.safetensors"))


def test_gradual_unfreezing_killed_mid_epoch_resumes_to_the_same_run(tmp_path: Path) -> None:
    images, labels = support.blob_images(12, seed=0)
    data = tmp_path / "images"
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (data / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / label / f"{i}.png")
    # random crops and flips, BatchNorm statistics, and the unfrozen groups all change with the epoch
    args = ["fit", data, "--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", 32,
            "--strategy", "gradual", "--epochs", 3, "--batch-size", 4, "--checkpoint-every", 2]
    # 6 batches per epoch: the 4th checkpoint is 2 batches into epoch 2, where 2 groups are unfrozen
    reference, run, loop = reference_and_killed(tmp_path, args, 4)
    assert (loop["epoch"], loop["step"]) == (1, 2)

    resumed = invoke(*args, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(run, reference, list(support.blob_images(4, seed=1)[0]))


def test_python_checkpoints_are_removed_after_fit_or_kept_to_resume(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(8, seed=0)
    folder = tmp_path / "checkpoints"
    # one optimizer step an epoch and a checkpoint every step: one is due at the end of training
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="finetune", epochs=2, lr=1e-3,
                             progress=False, checkpoint_dir=str(folder), checkpoint_every=1)
    expected = clf.fit(texts, labels).predict_proba(texts)
    assert not folder.exists()
    clf.fit(texts, labels, keep_checkpoints=True)
    assert read_progress(folder)["loop"]["epoch"] == 2  # type: ignore[index]
    # a crash between the end of training and saving: resuming trains no more and gives the same model
    resumed = TransferClassifier(**clf.get_params()).fit(texts, labels, resume=True)
    np.testing.assert_allclose(resumed.predict_proba(texts), expected, rtol=0, atol=1e-7)
    assert resumed.history_ == clf.history_ and not folder.exists()


def test_resume_refuses_other_data_of_the_same_size(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(8, seed=0)
    other, _ = support.sentiment_texts(8, seed=5)
    folder = tmp_path / "checkpoints"
    params = {"backbone": f"hf:{tiny_bert_dir}", "strategy": "finetune", "epochs": 2, "lr": 1e-3, "progress": False,
              "checkpoint_dir": str(folder), "checkpoint_every": 1}
    TransferClassifier(**params).fit(texts, labels, keep_checkpoints=True)
    with pytest.raises(ConfigError, match="differs in train_data"):
        TransferClassifier(**params).fit(other, labels, resume=True)
    with pytest.raises(ConfigError, match="differs in train_data"):
        TransferClassifier(**params).fit(texts, labels[::-1], resume=True)  # same texts, other labels
    TransferClassifier(**params).fit(texts, labels, resume=True)  # the same data still resumes
    assert not folder.exists()
