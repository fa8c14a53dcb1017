"""report.html of a fitted run, and the page comparing runs: what they show, from where, and the PNG files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from support import assert_user_error, invoke, tagged_sentences
from transferkit.report.evidence import MAX_MAP_ROWS, media, read_evidence
from transferkit.report.views import REPORT_VIEWS, ReportView, view_for


def _embedded_plots(page: Path) -> list[str]:
    return re.findall(r"<figure data-plot='([^']+)'><img alt='[^']*' src='data:image/png;base64,", page.read_text())


def test_a_probe_report_shows_out_of_fold_predictions_of_every_training_sample(image_runs: dict[str, Path]) -> None:
    run = image_runs["probe"]
    evidence = read_evidence(run)
    assert evidence is not None and evidence.source == "cross-validation"
    rows = evidence.rows
    assert len(rows["labels"]) == 20 and np.allclose(np.sum(rows["probs"], axis=1), 1.0, atol=1e-3)
    assert evidence.metrics is not None and evidence.metrics["n"] == 20
    assert evidence.features is not None and evidence.features.shape[0] == 20
    page = (run / "report.html").read_text()
    assert "out-of-fold predictions of the probe" in page and "Learning curves" not in page  # no epochs
    plots = _embedded_plots(run / "report.html")
    assert plots == ["confusion_matrix.png", "per_class.png", "reliability.png", "feature_map.png"]
    assert sorted(p.name for p in (run / "report").glob("*.png")) == sorted(plots)


def test_a_fine_tune_report_shows_its_validation_split_and_learning_curves(image_runs: dict[str, Path]) -> None:
    run = image_runs["finetune"]
    evidence = read_evidence(run)
    assert evidence is not None and evidence.source == "validation"
    metrics = json.loads((run / "metrics.json").read_text())["validation"]
    assert evidence.metrics["accuracy"] == pytest.approx(metrics["accuracy"])  # the same predictions
    assert _embedded_plots(run / "report.html")[0] == "learning_curves.png"
    page = (run / "report.html").read_text()
    assert "expected calibration error" in page and "random (from scratch)" in page
    # the worst examples are embedded thumbnails, worst first, no links to the data
    examples = evidence.examples
    assert 0 < len(examples) <= 8 and all(e["media"]["data"].startswith("data:image/jpeg;base64,") for e in examples)
    true_prob = [e["confidence"] if e["true"] == e["predicted"] else 1 - e["confidence"] for e in examples]
    assert true_prob == sorted(true_prob)
    assert "http" not in page and "<script" not in page


def test_report_compares_runs_and_redraws_one(image_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "both.html"
    result = invoke("report", image_runs["probe"], image_runs["finetune"], "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "2 runs compared" in page and "accuracy on cross-validation" in page and "accuracy on validation" in page
    plots = _embedded_plots(out)
    assert plots[:2] == ["scores.png", "learning_curves.png"] and "run2_feature_map.png" in plots
    assert sorted(p.name for p in (tmp_path / "both_files").glob("*.png")) == sorted(plots)
    (image_runs["probe"] / "report.html").unlink()
    choices = {"strategy": "linear_probe", "reasons": ["LP-FT did not beat the probe"],
               "candidates": [{"strategy": "linear_probe", "score": 0.9}, {"strategy": "lp_ft", "score": 0.85}]}
    (image_runs["probe"] / "choices.json").write_text(json.dumps(choices))  # as fit's automatic default writes it
    assert invoke("report", image_runs["probe"]).exit_code == 0
    page = (image_runs["probe"] / "report.html").read_text()
    assert "Why this recipe" in page and "LP-FT did not beat the probe" in page and "<td>lp_ft</td>" in page


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    assert_user_error(invoke("report", tmp_path), "not a transferkit run directory")


def test_the_built_in_tasks_have_their_views_and_any_other_gets_the_generic_one() -> None:
    from transferkit.tasks import TASKS

    assert {"classification", "multilabel", "regression", "ner", "verification", "generation",
            "detection"} <= set(REPORT_VIEWS.names())
    for name in TASKS.names():  # a task without its own view still gets a page (the generic view's metrics)
        assert isinstance(view_for(name), ReportView)
    assert type(view_for("no-such-task")) is ReportView


def test_media_embeds_a_bounded_thumbnail_clip_or_snippet() -> None:
    image = media(np.zeros((600, 300, 3), dtype=np.uint8), "image")
    assert image["kind"] == "image" and len(image["data"]) < 20_000
    clip = media(np.zeros(16000 * 10, dtype=np.float32), "audio")
    assert clip["data"].startswith("data:audio/wav;base64,") and len(clip["data"]) < 4 / 3 * (3 * 32000 + 100)
    assert media("x" * 1000, "text")["data"].endswith("…") and len(media("x" * 1000, "text")["data"]) == 300
    assert MAX_MAP_ROWS <= 1000


def test_a_ner_report_lists_entity_types_and_the_worst_sentences(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transferkit.cli.recording import fit_report
    from transferkit.estimator import TransferEstimator

    words, tags = tagged_sentences(24, seed=0)
    clf = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="ner", strategy="linear_probe").fit(words, tags)
    run = clf.save(tmp_path / "ner")
    page = fit_report(clf, run).read_text()
    evidence = read_evidence(run)
    assert evidence is not None and evidence.source == "training"  # token features: no out-of-fold probe
    assert "in-sample" in page and "Entities" in page and "entity type" in page
    assert {"POS", "NEG"} <= set(evidence.metrics["per_type"])
    assert _embedded_plots(run / "report.html") == ["per_entity_type.png"]


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_multilabel_and_regression_reports_from_out_of_fold_probes(task: str, tiny_bert_dir: Path,
                                                                   tmp_path: Path) -> None:
    import support
    from transferkit.cli.recording import fit_report
    from transferkit.estimator import TransferEstimator

    texts, targets = support.multilabel_texts(30) if task == "multilabel" else support.rated_texts(30)
    clf = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task=task).fit(texts, targets)
    run = clf.save(tmp_path / task)
    page = fit_report(clf, run).read_text()
    evidence = read_evidence(run)
    assert evidence is not None and evidence.source == "cross-validation" and evidence.metrics["n"] == 30
    expected = {"multilabel": ["per_label.png"], "regression": ["predicted_vs_true.png"]}[task]
    assert _embedded_plots(run / "report.html") == expected
    assert evidence.features is None  # no class to colour a map by
    assert ("Per-label precision and recall" if task == "multilabel" else "Largest errors") in page


def test_a_verification_report_draws_the_det_curve_and_score_histograms(tmp_path: Path) -> None:
    import torch

    from support import identity_images
    from transferkit.cli.recording import fit_report
    from transferkit.estimator import TransferEstimator

    torch.manual_seed(0)
    x, y = identity_images(range(4), 8, seed=0)
    clf = TransferEstimator(task="verification", backbone="timm:test_efficientnet", pretrained=False,
                            backbone_options={"image_size": 32}, progress=False).fit(x, y)
    run = clf.save(tmp_path / "verification")
    page = fit_report(clf, run).read_text()
    evidence = read_evidence(run)
    assert evidence is not None
    trials = evidence.rows["trials"]
    n, k = len(evidence.rows["true"]), len(clf.task_.names)
    assert sum(trials["same"]) + sum(trials["different"]) == n * k == evidence.metrics["trials"]
    assert sum(trials["same"]) == sum(t in clf.task_.names for t in evidence.rows["true"])
    assert trials["edges"][0] >= -1.0001 and trials["edges"][-1] <= 1.0001  # the probe's out-of-fold cosines
    fpr, fnr = np.array(trials["det"]["fpr"]), np.array(trials["det"]["fnr"])
    assert fpr[0] >= fpr[-1] and fnr[0] <= fnr[-1] and len(fpr) <= 400  # rates move oppositely along the curve
    plots = _embedded_plots(run / "report.html")
    assert {"det_curve.png", "score_histogram.png"} <= set(plots)
    assert sorted(p.name for p in (run / "report").glob("*.png")) == sorted(plots)
    assert "DET curve" in page and "EER" in page
