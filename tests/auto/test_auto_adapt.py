"""The automatic default of ``adapt``: label-free signs of source-only decide between the two families."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from support import assert_user_error, invoke, sentiment_texts, write_csv
from transferkit.adapt.estimator import DomainAdaptationClassifier
from transferkit.auto.adapt import DEEP_DEFAULT, FEATURE_DEFAULT, choose_method, hopeless_signs, source_only_signs


def _domains(shift: float, scramble: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three Gaussian classes; the target is shifted, or scrambled so the source's boundaries say nothing."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    ys = np.repeat(np.arange(3), 40)
    xs = centres[ys] + rng.normal(size=(120, 2))
    yt = np.repeat(np.arange(3), 30)
    xt = centres[yt] + rng.normal(size=(90, 2)) + shift
    if scramble:  # every target sample lands in the middle of the source classes
        xt = rng.normal(size=(90, 2)) * 0.3 + np.array([1.5, 1.5])
    return xs, ys, xt


def test_a_small_shift_keeps_the_feature_family() -> None:
    xs, ys, xt = _domains(0.3, scramble=False)
    signs = source_only_signs(xs, ys, xt)
    assert signs["class_coverage"] > 0.9 and hopeless_signs(signs) == []
    choice = choose_method(xs, ys, xt, budget=1e6, deep_cost=lambda: 1.0)
    assert (choice.method, choice.level) == (FEATURE_DEFAULT, "features")
    assert choice.deep_estimate_seconds is None  # not even estimated


def test_a_hopeless_source_only_trains_the_backbone_when_the_budget_allows() -> None:
    xs, ys, xt = _domains(0.0, scramble=True)
    assert hopeless_signs(source_only_signs(xs, ys, xt))
    deep = choose_method(xs, ys, xt, budget=100.0, deep_cost=lambda: 50.0)
    assert (deep.method, deep.level) == (DEEP_DEFAULT, "deep") and deep.deep_estimate_seconds == 50.0
    assert "hopeless" in deep.reasons[0]
    over = choose_method(xs, ys, xt, budget=10.0, deep_cost=lambda: 50.0)
    assert over.method == FEATURE_DEFAULT and "over the 10s budget" in over.reasons[0]
    assert choose_method(xs, ys, xt, budget=None, deep_cost=lambda: 1.0).method == FEATURE_DEFAULT
    assert choose_method(xs, ys, xt, budget=100.0, deep_cost=None).method == FEATURE_DEFAULT


def test_the_array_estimator_records_its_automatic_choice() -> None:
    xs, ys, xt = _domains(0.3, scramble=False)
    X = np.vstack([xs, xt])
    y = np.concatenate([ys, -np.ones(len(xt), dtype=int)])
    domain = np.concatenate([np.ones(len(xs)), -np.ones(len(xt))])
    clf = DomainAdaptationClassifier("auto").fit(X, y, sample_domain=domain)
    assert clf.choice_.method == FEATURE_DEFAULT and clf.search_.method == FEATURE_DEFAULT
    assert clf.predict(xt).shape == (len(xt),)


def test_cli_adapt_without_a_method_writes_its_choice(tiny_bert_dir: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "source.csv", *sentiment_texts(12, seed=0))
    target = write_csv(tmp_path / "target.csv", *sentiment_texts(8, seed=1))
    out = tmp_path / "run"
    result = invoke("adapt", "--source", source, "--target", target, "--backbone", f"hf:{tiny_bert_dir}",
                    "--budget", "1s", "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "adapt.json").read_text())
    assert summary["method"] == summary["choice"]["method"]
    assert json.loads((out / "choices.json").read_text())["signs"] == summary["choice"]["signs"]
    both = invoke("adapt", "--source", source, "--target", target, "--method", "coral", "--budget", "1m",
                  "--out", tmp_path / "other")
    assert_user_error(both, "--budget")
