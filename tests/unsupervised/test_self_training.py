"""Self-training from a weak unsupervised start: it must improve on the start without labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

import support
from transferkit.errors import ConfigError, DataError
from transferkit.estimator import load
from transferkit.unsupervised.clustering import FeatureClusterer
from transferkit.unsupervised.self_training import SelfTrainingClassifier, round_fractions, self_train
from transferkit.unsupervised.zero_shot import ZeroShotClassifier


def _two_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 200)
    x = rng.normal(size=(400, 10))
    x[:, 0] += np.where(y == 1, 2.5, -2.5)  # the classes differ along the first axis only
    return x.astype(np.float32), y


def test_self_training_corrects_a_tilted_start() -> None:
    x, y = _two_blobs()
    # the start's boundary is tilted (as a zero-shot prototype off the class mean tilts it): right
    # near the blob centres, wrong on a wide wedge
    start_logits = 2.0 * (x[:, 0] + 3.75 * x[:, 1])
    start = softmax(np.stack([-start_logits, start_logits], axis=1), axis=1)
    start_accuracy = float((start.argmax(axis=1) == y).mean())
    result = self_train(x, start, rounds=3, c=1.0)
    final_accuracy = float((result.probabilities.argmax(axis=1) == y).mean())
    assert start_accuracy < 0.8
    assert final_accuracy > start_accuracy + 0.06
    assert [r.round for r in result.history] == [1, 2, 3]
    assert result.history[0].pseudo_labels < result.history[-1].pseudo_labels  # the share grows


def test_a_class_nobody_predicts_is_dropped_with_a_warning() -> None:
    x, y = _two_blobs()
    start = np.zeros((len(x), 3))
    start[np.arange(len(x)), y] = 1.0  # class 2 never predicted
    with pytest.warns(UserWarning, match="dropped"):
        result = self_train(x, start, rounds=1, c=1.0)
    assert result.probabilities.shape == (400, 3)
    assert result.probabilities[:, 2].max() < 1e-6


def test_schedule_and_shape_errors() -> None:
    assert round_fractions(3, 0.2, 0.8) == pytest.approx([0.2, 0.5, 0.8])
    with pytest.raises(ConfigError, match="at least one round"):
        round_fractions(0, 0.2, 0.8)
    with pytest.raises(ConfigError, match="fraction"):
        round_fractions(2, 0.0, 0.8)
    with pytest.raises(DataError, match="do not match"):
        self_train(np.zeros((3, 2)), np.ones((4, 2)) / 2)


def test_estimator_from_a_zero_shot_start_saves_a_loadable_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, _ = support.sentiment_texts(15, seed=0)
    start = ZeroShotClassifier(["good", "bad"], backbone=f"hf:{tiny_bert_dir}", templates=["{}"])
    model = SelfTrainingClassifier(start, rounds=2, probe_c=1.0).fit(texts)
    assert [r["round"] for r in model.history_] == [1, 2]
    assert model.classes_.tolist() == ["good", "bad"]
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (30, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    run = model.classifier_.save(tmp_path / "run")
    assert load(run).predict(texts).tolist() == model.predict(texts).tolist()


def test_estimator_from_clusters_with_the_training_loop(tiny_bert_dir: Path) -> None:
    texts, _ = support.sentiment_texts(10, seed=1)
    start = FeatureClusterer(f"hf:{tiny_bert_dir}", k=2, pca_dims=None)
    model = SelfTrainingClassifier(start, strategy="finetune", rounds=1, epochs=1, batch_size=8).fit(texts)
    assert model.classifier_.backbone_trained_ and model.classes_.tolist() == ["cluster0", "cluster1"]
    assert set(model.predict(texts)) <= {"cluster0", "cluster1"}


def test_a_starter_without_backbone_is_refused() -> None:
    x, _ = _two_blobs()
    with pytest.raises(ConfigError, match="backbone"):
        SelfTrainingClassifier(FeatureClusterer(None, k=2)).fit(x)
