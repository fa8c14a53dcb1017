"""transferkit.params: one table of option ranges, used by the estimators (and the CLI, tests/cli/test_options.py)."""

from __future__ import annotations

import math

import pytest

import support
from transferkit import TransferClassifier
from transferkit.errors import ConfigError
from transferkit.params import RANGES, Range, check_params


@pytest.mark.parametrize(("bounds", "inside", "outside", "words"), [
    (Range(1, integer=True), [1, 7], [0, -1, 1.5, True, "3", math.inf], "an integer >= 1"),
    (Range(0, low_open=True), [1e-9, 3.0, 2], [0, -1.0, math.nan], "a number > 0"),
    (Range(0, 1, high_open=True), [0, 0.5], [1, 1.5, -0.1], "a number in [0, 1)"),
])
def test_range_contains_and_describes(bounds: Range, inside: list, outside: list, words: str) -> None:
    assert all(bounds.contains(v) for v in inside)
    assert not any(bounds.contains(v) for v in outside)
    assert bounds.describe() == words


@pytest.mark.parametrize(("params", "named"), [
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": -1}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"lr": 0.0}, "lr"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"layer_decay": 0.0}, "layer_decay"),
    ({"backbone_options": {"image_size": 0}}, "image_size"),
    ({"backbone_options": {"max_length": "long"}}, "max_length"),
])
def test_the_estimator_refuses_out_of_range_values_before_any_work(params: dict, named: str) -> None:
    # an unknown backbone would fail later: the range check comes first
    clf = TransferClassifier(backbone="no_such_backbone", **params)
    with pytest.raises(ConfigError, match=named):
        clf.fit(*support.sentiment_texts(4))


def test_defaults_are_in_range() -> None:
    check_params(TransferClassifier().get_params())
    assert {"batch_size", "epochs", "lr", "val_fraction", "image_size", "top_k"} <= set(RANGES)
