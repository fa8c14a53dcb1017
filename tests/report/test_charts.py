"""The report's figures and the numbers drawn in them."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.report import charts


def test_a_calibrated_model_has_a_small_ece_and_an_overconfident_one_a_large_one() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    calibrated = charts.calibration_bins(confidence, rng.uniform(size=confidence.size) < confidence)
    assert calibrated["ece"] < 0.02
    # always 95 % sure, right 60 % of the time: the gap is 0.35 in the one bin used
    over = charts.calibration_bins(np.full(1000, 0.95), np.arange(1000) < 600)
    assert over["ece"] == pytest.approx(0.35)
    assert [b["count"] for b in over["bins"]] == [1000] and over["bins"][0]["low"] == pytest.approx(0.9)


def test_confidence_one_falls_in_the_last_bin() -> None:
    result = charts.calibration_bins(np.array([1.0, 0.0, 0.55]), np.array([True, False, True]))
    assert [(b["low"], b["count"]) for b in result["bins"]] == [(0.0, 1), (0.5, 1), (pytest.approx(0.9), 1)]
    assert result["ece"] == pytest.approx((0 + 0.45 + 0) / 3)


def test_learning_curves_put_losses_left_and_scores_right() -> None:
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.5 + 0.1 * e, "lr": 0.1,
                "note": "text"} for e in (1, 2, 3)]
    fig = charts.learning_curves({"a": history, "b": history[:2]})
    loss_ax, score_ax = fig.axes
    assert sorted(line.get_label() for line in loss_ax.lines) == ["a: train_loss", "a: val_loss", "b: train_loss",
                                                                    "b: val_loss"]
    assert [line.get_label() for line in score_ax.lines] == ["a: val_accuracy", "b: val_accuracy"]
