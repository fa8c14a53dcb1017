"""`transferkit adapt` and `transferkit list adaptation-method` on tiny text data with a tiny BERT, offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from support import assert_user_error, invoke, sentiment_texts, write_csv
from transferkit.checkpoint import checkpoint_folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("adapt_cli")
    source = write_csv(folder / "source.csv", *sentiment_texts(15, seed=0))
    texts, labels = sentiment_texts(12, seed=1)
    target = write_csv(folder / "target.csv", [f"very very {t} the plot" for t in texts], labels)  # shifted wording
    return source, target, folder


def test_list_shows_the_adaptation_methods_with_grids() -> None:
    result = invoke("list", "adaptation-method")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"coral", "subspace_alignment", "entropic_ot", "cbst", "source_only"} <= lines.keys()
    assert "features" in lines["coral"] and "grid: C=" in lines["coral"]
    assert "source-free" in lines["shot"] and "deep" in lines["shot"]


def test_adapt_writes_report_predictions_and_label_free_choice(domains: tuple[Path, Path, Path],
                                                               tiny_bert_dir: Path) -> None:
    source, target, folder = domains
    out = folder / "run"
    result = invoke("adapt", "--source", source, "--target", target, "--target-eval", target, "--method", "coral",
                    "--backbone", f"hf:{tiny_bert_dir}", "--out", out)
    assert result.exit_code == 0, result.output
    assert "by dev (no target labels)" in result.stdout and f"wrote {out}" in result.stdout
    summary = json.loads((out / "adapt.json").read_text())
    assert summary["n_target"] == 24 and summary["classes"] == ["neg", "pos"]
    assert summary["selection"]["criterion"] == "dev" and summary["selection"]["oracle_params"] is not None
    accuracy = summary["accuracy"]
    assert {"source_only (before)", "coral (after, label-free choice)"} <= accuracy.keys()
    assert accuracy["coral (after, label-free choice)"]["target"] > 0.6
    assert set(summary["per_class"]["coral (after, label-free choice)"]) == {"neg", "pos"}
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "origin,label,confidence" and len(rows) == 25
    assert (out / "embedding.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "oracle" in page and "data-plot='embedding.png'><img" in page and "src='embedding.png'" not in page
    # the adapted model is a run directory: loading it gives back the labels of predictions.csv
    from transferkit import load

    clf = load(out / "model")
    texts = [row["text"] for row in csv.DictReader(target.open())]
    saved = list(csv.reader(rows[1:]))
    assert clf.predict(texts).tolist() == [label for _, label, _ in saved]
    assert np.allclose(clf.predict_proba(texts).max(axis=1), [float(c) for _, _, c in saved], atol=1e-3)
    predicted = invoke("predict", out / "model", texts[0], "--json")
    assert predicted.exit_code == 0 and saved[0][1] in predicted.stdout
    again = invoke("adapt", "--source", source, "--target", target, "--method", "coral",
                   "--backbone", f"hf:{tiny_bert_dir}", "--out", out)
    assert_user_error(again, "already exists")


def test_adapt_names_bad_input(domains: tuple[Path, Path, Path], tiny_bert_dir: Path, tmp_path: Path) -> None:
    source, target, _ = domains
    backbone = f"hf:{tiny_bert_dir}"
    odd = write_csv(tmp_path / "odd.csv", ["good film", "meh film"], ["pos", "meh"])
    result = invoke("adapt", "--source", source, "--target", target, "--target-eval", odd, "--backbone", backbone,
                    "--out", tmp_path / "a")
    assert_user_error(result, "['meh']", "absent from the source")
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(images / label / f"{i}.png")
    result = invoke("adapt", "--source", source, "--target", images, "--backbone", backbone, "--out", tmp_path / "b")
    assert_user_error(result, "is text but the target", "is image")
    unlabelled = tmp_path / "plain.txt"
    unlabelled.write_text("good film\nawful film\n")
    result = invoke("adapt", "--source", unlabelled, "--target", target, "--backbone", backbone,
                    "--out", tmp_path / "c")
    assert_user_error(result, "without labels")
    result = invoke("adapt", "--source", source, "--target", target, "--method", "nope", "--out", tmp_path / "d")
    assert_user_error(result, "unknown adaptation method 'nope'")
    result = invoke("adapt", "--source", source, "--target", target, "--method", "cbst", "--param", "gamma=2",
                    "--backbone", backbone, "--out", tmp_path / "e")
    assert_user_error(result, "adaptation method 'cbst' has no setting 'gamma'", "C, rounds, align")
    assert not any(p.name.startswith(("a", "b", "c", "d", "e")) for p in tmp_path.iterdir() if p.is_dir())


def test_a_deep_method_runs_end_to_end_with_the_oracle_reported(domains: tuple[Path, Path, Path],
                                                                tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A deep-level method trains through ``transferkit.adapt.deep``; --target-eval labels only feed the report."""
    from transferkit.adapt.api import adapt

    source, target, _ = domains
    summary = adapt(source, target, method="dann", backbone=f"hf:{tiny_bert_dir}", target_eval=target,
                    out=tmp_path / "deep", deep_options={"epochs": 2}, params={"trade_off": 0.1}, progress=False)
    assert summary["level"] == "deep"
    assert summary["info"]["kept_epoch"] in (1, 2)
    assert "oracle_accuracy" in summary["history"][-1]  # recorded beside the label-free choice, never used by it
    assert 0.0 <= summary["accuracy"]["dann (after)"]["target"] <= 1.0
    assert (tmp_path / "deep" / "report.html").is_file() and (tmp_path / "deep" / "embedding.png").is_file()
    # the adapted backbone and head are saved whole and load back to the same target predictions
    from transferkit import load

    saved = [row["label"] for row in csv.DictReader((tmp_path / "deep" / "predictions.csv").open())]
    texts = [row["text"] for row in csv.DictReader(target.open())]
    assert load(tmp_path / "deep" / "model").predict(texts).tolist() == saved


def test_a_killed_deep_adaptation_resumes_to_the_same_output(domains: tuple[Path, Path, Path], tiny_bert_dir: Path,
                                                             tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from test_resume import reference_and_killed

    source, target, _ = domains
    args = ["adapt", "--source", source, "--target", target, "--method", "dann", "--backbone", f"hf:{tiny_bert_dir}",
            "--epochs", 2, "--batch-size", 8, "--lr", "1e-3", "--checkpoint-every", 2, "--param", "trade_off=0.3"]
    # 30 source texts make 4 batches an epoch: checkpoints after steps 2, 4 (end of epoch 1) and 6
    reference, run, loop = reference_and_killed(tmp_path, args, 3, stage="adapt")
    assert (loop["epoch"], loop["step"]) == (1, 2)
    assert_user_error(invoke(*args, "--out", run), "--resume")
    assert_user_error(invoke(*args[:-1], "trade_off=1.0", "--out", run, "--resume"), "differs in run.params.trade_off")

    resumed = invoke(*args, "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert not checkpoint_folder(run).exists()
    summary, expected = (json.loads((folder / "adapt.json").read_text()) for folder in (run, reference))
    for key in ("history", "accuracy"):
        assert summary.get(key) == expected.get(key), key
    assert {k: v for k, v in summary["info"].items() if k != "wall_s"} == \
        {k: v for k, v in expected["info"].items() if k != "wall_s"}
    assert (run / "predictions.csv").read_text() == (reference / "predictions.csv").read_text()
    for name in ("head.safetensors", "backbone.safetensors"):
        weights, reference_weights = load_file(run / "model" / name), load_file(reference / "model" / name)
        for key, value in reference_weights.items():
            assert torch.equal(weights[key], value), f"{name}: {key}"


def test_adapt_help_says_how_to_resume() -> None:
    result = invoke("adapt", "--help")
    assert result.exit_code == 0
    assert "--resume" in result.stdout and "OUT.checkpoints" in result.stdout
