"""Multi-label and regression end to end through the estimator: fit, evaluate, predict, save, load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import support
import transferkit
from transferkit import TransferClassifier, TransferEstimator, TransferRegressor
from transferkit.errors import ArtifactError, ConfigError, DataError

DATA = {"multilabel": support.multilabel_texts, "regression": support.rated_texts}
FINETUNE = {"epochs": 4, "batch_size": 8, "lr": 1e-3}


@pytest.fixture(scope="module", params=["multilabel", "regression"])
def task(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def probe(task: str, tiny_bert_dir: Path) -> TransferEstimator:
    x, y = DATA[task](48, seed=0)
    return TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task=task, progress=False).fit(x, y)


@pytest.fixture(scope="module")
def finetuned(task: str, tiny_bert_dir: Path) -> TransferEstimator:
    x, y = DATA[task](48, seed=0)
    return TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task=task, strategy="finetune", progress=False,
                             **FINETUNE).fit(x, y)


def test_probe_learns_the_targets(probe: TransferEstimator, task: str) -> None:
    x_test, y_test = DATA[task](30, seed=1)
    metrics = probe.evaluate(x_test, y_test)
    assert metrics["n"] == 30
    if task == "multilabel":
        assert probe.classes_.tolist() == ["acting", "neg", "plot", "pos"]
        assert metrics["micro_f1"] > 0.9 and set(metrics["per_label"]) == set(probe.classes_)
        predicted = probe.predict(x_test)
        assert all(isinstance(labels, list) for labels in predicted)
        probabilities = probe.predict_proba(x_test)
        assert probabilities.shape == (30, 4) and ((probabilities >= 0) & (probabilities <= 1)).all()
    else:
        assert metrics["r2"] > 0.8 and metrics["mae"] < 0.5
        predicted = probe.predict(x_test)
        assert predicted.dtype == np.float64 and 0 < predicted.mean() < 6  # back in stars, not standardised


def test_finetuning_lowers_the_loss_and_validates_with_the_tasks_score(finetuned: TransferEstimator,
                                                                        task: str) -> None:
    history = finetuned.history_
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    score = {"multilabel": "val_micro_f1", "regression": "val_r2"}[task]
    assert all(score in row and "val_loss" in row for row in history)
    assert finetuned.strategy_info_["best_epoch"] == 1 + max(range(len(history)), key=lambda i: (
        history[i][score], -history[i]["val_loss"]))
    assert finetuned.validation_metrics_ is not None and finetuned.backbone_trained_
    if task == "regression":
        x_test, y_test = DATA[task](30, seed=1)
        assert finetuned.evaluate(x_test, y_test)["r2"] > 0.2


@pytest.mark.parametrize("which", ["probe", "finetuned"])
def test_a_saved_run_loads_as_its_task_and_predicts_identically(which: str, task: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    est: TransferEstimator = request.getfixturevalue(which)
    x_test, _ = DATA[task](12, seed=2)
    run = est.save(tmp_path / "run")
    manifest = json.loads((run / "transferkit.json").read_text())
    assert manifest["task"]["name"] == task and manifest["task"]["output"] == "pooled"
    if task == "regression":
        assert manifest["task"]["encoding"]["std"] > 0
    loaded = transferkit.load(run)
    assert type(loaded) is (TransferRegressor if task == "regression" else TransferEstimator)
    assert loaded.task_.name == task and loaded.task_.state() == est.task_.state()
    np.testing.assert_array_equal(loaded.predict_scores(x_test), est.predict_scores(x_test))
    assert loaded.predict(x_test).tolist() == est.predict(x_test).tolist()


def test_lp_ft_runs_through_the_same_loss(tiny_bert_dir: Path) -> None:
    x, y = support.rated_texts(32, seed=0)
    reg = TransferRegressor(backbone=f"hf:{tiny_bert_dir}", strategy="lp_ft", epochs=1, batch_size=8, progress=False)
    reg.fit(x, y)
    assert "probe_alpha" in reg.strategy_info_ and "val_r2" in reg.history_[0]
    x_test, y_test = support.rated_texts(20, seed=1)
    assert reg.score(x_test, y_test) > 0.5  # RegressorMixin: R²


def test_contrastive_is_classification_only(tiny_bert_dir: Path) -> None:
    x, y = support.rated_texts(16, seed=0)
    with pytest.raises(ConfigError, match="contrastive strategy .* classification only, not regression"):
        TransferRegressor(backbone=f"hf:{tiny_bert_dir}", strategy="contrastive", progress=False).fit(x, y)


def test_probabilities_only_where_the_task_has_them(probe: TransferEstimator, task: str) -> None:
    if task == "regression":
        with pytest.raises(ConfigError, match="predicts values, not probabilities"):
            probe.predict_proba(["good film"])
    else:
        np.testing.assert_array_equal(probe.predict_proba(["good film"]), probe.predict_scores(["good film"]))


def test_a_non_numeric_regression_target_is_a_data_error(tiny_bert_dir: Path) -> None:
    with pytest.raises(DataError, match="regression needs numeric targets, but 'five' is not a number"):
        TransferRegressor(backbone=f"hf:{tiny_bert_dir}").fit(["good", "bad", "fine"], ["5", "1", "five"])


def test_multilabel_targets_may_be_lists_of_names(tiny_bert_dir: Path) -> None:
    x, y = support.multilabel_texts(24, seed=0)
    as_lists = [label.split("|") for label in y]
    a = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="multilabel", progress=False).fit(x, as_lists)
    b = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="multilabel", progress=False).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_a_fixed_task_class_refuses_another_task(tmp_path: Path, probe: TransferEstimator, task: str) -> None:
    with pytest.raises(ConfigError, match="TransferClassifier fits classification, not 'regression'"):
        TransferClassifier(task="regression").fit(["a", "b"], ["1", "2"])
    run = probe.save(tmp_path / "run")
    with pytest.raises(ArtifactError, match=f"holds a {task} model, not classification"):
        TransferClassifier.load(run)


def test_a_run_written_before_tasks_loads_as_classification(tiny_bert_dir: Path, tmp_path: Path) -> None:
    x, y = support.sentiment_texts(10, seed=0)
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False).fit(x, y)
    run = clf.save(tmp_path / "run")
    path = run / "transferkit.json"
    manifest = json.loads(path.read_text())
    del manifest["task"]
    manifest["estimator_params"].pop("task")
    path.write_text(json.dumps(manifest))
    loaded = transferkit.load(run)
    assert type(loaded) is TransferClassifier and loaded.task_.name == "classification"
    np.testing.assert_array_equal(loaded.predict_proba(x), clf.predict_proba(x))


@pytest.mark.parametrize(("strategy", "task"), [("lora", "multilabel"), ("partial", "regression"),
                                                ("gradual", "multilabel")])
def test_other_strategies_train_through_the_tasks_loss(strategy: str, task: str, tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    x, y = DATA[task](24, seed=0)
    est = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task=task, strategy=strategy, epochs=2, batch_size=8,
                            progress=False).fit(x, y)
    score = {"multilabel": "val_micro_f1", "regression": "val_r2"}[task]
    assert [score in row for row in est.history_] == [True, True]
    loaded = transferkit.load(est.save(tmp_path / "run"))
    np.testing.assert_array_equal(loaded.predict_scores(x), est.predict_scores(x))
