"""The verification task: AAM loss, EER, enrolment and thresholds, on tiny identity images and a tiny CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import transferkit
from support import identity_images
from transferkit import TransferEstimator
from transferkit.errors import DataError
from transferkit.tasks import make_task
from transferkit.tasks.verification import UNKNOWN, additive_angular_margin_loss, equal_error_rate

TINY = {"backbone": "timm:test_efficientnet", "pretrained": False, "backbone_options": {"image_size": 32},
        "progress": False}


@pytest.fixture(scope="module")
def probe() -> TransferEstimator:
    torch.manual_seed(0)
    x, y = identity_images(range(5), 8, seed=0)
    return TransferEstimator(task="verification", **TINY).fit(x, y)


def test_equal_error_rate_and_its_threshold() -> None:
    eer, threshold = equal_error_rate(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False]))
    assert eer == 0.0 and 0.3 < threshold < 0.8
    eer, _ = equal_error_rate(np.array([0.9, 0.2, 0.5, 0.1]), np.array([True, True, False, False]))
    assert eer == pytest.approx(0.5)
    with pytest.raises(DataError, match="same-identity and different-identity"):
        equal_error_rate(np.array([0.9, 0.8]), np.array([True, True]))


def test_margin_makes_the_loss_harder() -> None:
    cosines = torch.tensor([[0.8, 0.1, -0.2], [0.0, 0.5, 0.4]])
    targets = torch.tensor([0, 1])
    plain = F.cross_entropy(30.0 * cosines, targets)
    torch.testing.assert_close(additive_angular_margin_loss(cosines, targets, margin=0.0), plain)
    assert additive_angular_margin_loss(cosines, targets) > plain + 1.0
    # a target of -1 (an identity not enrolled) is ignored
    torch.testing.assert_close(additive_angular_margin_loss(cosines, torch.tensor([0, -1]), margin=0.0),
                               F.cross_entropy(30.0 * cosines[:1], targets[:1]))


def test_needs_two_samples_of_each_identity() -> None:
    with pytest.raises(DataError, match="identity 'b' has one sample"):
        make_task("verification").fit_targets(["a", "a", "b"])
    with pytest.raises(DataError, match="at least two identities"):
        make_task("verification").fit_targets(["a", "a"])


def test_probe_enrols_identifies_and_rejects_strangers(probe: TransferEstimator, tmp_path: Path) -> None:
    info = probe.strategy_info_
    assert -1.0 <= info["enrol_threshold"] <= 1.0 and -1.0 <= info["pair_threshold"] <= 1.0
    known_x, known_y = identity_images(range(5), 4, seed=1)
    strange_x, strange_y = identity_images(range(5, 8), 4, seed=1)
    x, y = np.concatenate([known_x, strange_x]), known_y + strange_y
    metrics = probe.evaluate(x, y)
    assert metrics["eer"] < 0.15 and metrics["accuracy_at_threshold"] > 0.8
    assert metrics["not_enrolled"] == 12 and metrics["identification_accuracy"] > 0.7
    predicted = probe.predict(x)
    assert (predicted[:20] == np.array(known_y)).mean() > 0.7
    assert (predicted[20:] == UNKNOWN).mean() > 0.5
    # the run directory keeps enrolment and thresholds: the same answers after loading
    loaded = transferkit.load(probe.save(tmp_path / "run"))
    np.testing.assert_allclose(loaded.predict_scores(x), probe.predict_scores(x), atol=1e-5)
    assert loaded.task_.pair_threshold == pytest.approx(probe.task_.pair_threshold)
    emb = loaded.task_.embeddings(loaded.model_, loaded._samples(x[:2]))
    assert emb.shape == (2, loaded.model_.backbone.num_features)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_finetuning_with_the_margin_loss_on_the_loop() -> None:
    torch.manual_seed(0)
    x, y = identity_images(range(4), 8, seed=0)
    est = TransferEstimator(task="verification", strategy="finetune", epochs=4, batch_size=8, lr=3e-3,
                            **TINY).fit(x, y)
    history = est.history_
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all("val_auc" in row for row in history)
    assert est.strategy_info_["calibration_samples"] == 8  # the stratified validation split
    test_x, test_y = identity_images(range(4), 4, seed=2)
    assert est.evaluate(test_x, test_y)["auc"] > 0.75


def test_probe_standardises_the_frozen_features() -> None:
    task = make_task("verification").fit_targets(["a", "b"] * 10)
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((20, 6)) * [1, 2, 3, 4, 5, 6] + 7).astype(np.float32)
    features[:, 5] = 1.0  # a dead dimension gets no weight
    probe = task.fit_probe(features, task.encode(["a", "b"] * 10), c=None, seed=0)
    assert probe.weight.shape == (6, 6) and probe.bias.shape == (6,)
    projected = features @ probe.weight.T + probe.bias
    np.testing.assert_allclose(projected[:, :5].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(projected[:, :5].std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(projected[:, 5], 0.0, atol=1e-5)
