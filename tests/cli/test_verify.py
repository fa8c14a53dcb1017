"""`transferkit fit --task verification`, `verify` and `predict` through the CLI, and their user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support import assert_user_error, identity_images, invoke, write_images

TINY = ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faces")
    data = write_images(root / "train", *identity_images(range(4), 6, seed=0))
    run = root / "run"
    result = invoke("fit", data, "--task", "verification", *TINY, "--report", "--out", run)
    assert result.exit_code == 0, result.output
    test = write_images(root / "test", *identity_images(range(5), 2, seed=3))
    return run, test


def test_verify_prints_a_score_and_a_decision(image_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, test = image_run
    copy = tmp_path / "again.png"
    copy.write_bytes((test / "id0" / "00.png").read_bytes())
    same = invoke("verify", run, test / "id0" / "00.png", copy, "--json")
    other = invoke("verify", run, test / "id0" / "00.png", test / "id3" / "06.png", "--json")
    assert same.exit_code == 0 and other.exit_code == 0, same.output + other.output
    same, other = json.loads(same.stdout), json.loads(other.stdout)
    threshold = json.loads((run / "transferkit.json").read_text())["strategy_info"]["pair_threshold"]
    assert same["threshold"] == pytest.approx(threshold) and -1.0 < threshold < 1.0
    assert same["score"] == pytest.approx(1.0, abs=1e-5) and same["decision"] == "same"
    assert other["score"] < same["score"] and other["decision"] == ("same" if other["score"] >= threshold
                                                                     else "different")
    score, decision, shown = invoke("verify", run, test / "id0" / "00.png", copy).stdout.strip().split("\t")
    assert float(score) == pytest.approx(1.0, abs=1e-3) and decision == "same" and str(round(threshold, 4)) in shown


def test_predict_names_the_enrolled_identity_or_unknown(image_run: tuple[Path, Path]) -> None:
    run, test = image_run
    result = invoke("predict", run, test / "id1" / "02.png", test / "id4" / "08.png", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["identity"] == "id1"
    assert "accuracy_at_threshold" in (run / "report.html").read_text()  # the task's report view
    for record in records:  # the best enrolled identity when it reaches the threshold, else unknown
        best, similarity = max(record["similarity"].items(), key=lambda item: item[1])
        assert record["identity"] == (best if similarity >= record["threshold"] else "unknown")


def test_verify_refuses_another_modality_and_other_runs(image_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, test = image_run
    clip = tmp_path / "voice.wav"
    sf.write(clip, np.zeros(8000, dtype=np.float32), 16000)
    assert_user_error(invoke("verify", run, test / "id0" / "00.png", clip), "voice.wav")
    assert_user_error(invoke("verify", run, test / "id0", test / "id1"), "two inputs")


def test_clip_shorter_than_the_encoder_window_leaves_no_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for speaker in ("ann", "bob"):
        (tmp_path / "data" / speaker).mkdir(parents=True)
        for take in range(3):
            sf.write(tmp_path / "data" / speaker / f"{take}.wav", 0.1 * rng.standard_normal(8000), 16000)
    sf.write(tmp_path / "data" / "bob" / "tiny.wav", 0.1 * rng.standard_normal(100), 16000)
    result = invoke("fit", tmp_path / "data", "--task", "verification", "--backbone", "ge2e_speaker", "--from-scratch",
                    "--out", tmp_path / "run")
    assert_user_error(result, "tiny.wav", "shorter than ge2e_speaker's 25 ms analysis window")
    assert not (tmp_path / "run").exists()
