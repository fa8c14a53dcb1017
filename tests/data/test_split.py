"""stratified_split and split_samples."""

from collections import Counter

import numpy as np
import pytest

from transferkit.data import Samples, split_samples, stratified_split
from transferkit.errors import ConfigError


def test_split_is_stratified_disjoint_and_complete() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    train, val = stratified_split(labels, 0.2, seed=0)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert Counter(labels[i] for i in val) == {"a": 10, "b": 6, "c": 4}
    assert list(val) == sorted(val)


def test_split_is_reproducible_and_seeded() -> None:
    labels = [str(i % 3) for i in range(60)]
    first = stratified_split(labels, 0.25, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(first, stratified_split(labels, 0.25, seed=1), strict=True))
    assert not np.array_equal(first[1], stratified_split(labels, 0.25, seed=2)[1])


def test_every_class_keeps_a_training_sample_and_gets_a_validation_one() -> None:
    labels = ["a", "a", "b", "b", "b"] + ["c"] * 40
    train, val = stratified_split(labels, 0.9, seed=0)
    assert {labels[i] for i in train} == {"a", "b", "c"}
    assert {labels[i] for i in val} == {"a", "b", "c"}
    train, val = stratified_split(labels, 0.01, seed=0)
    assert Counter(labels[i] for i in val) == {"a": 1, "b": 1, "c": 1}


def test_a_single_example_class_only_trains_and_the_others_are_still_validated() -> None:
    labels = ["a", "a", "a", "b", "c", "c", "c", "c"]
    with pytest.warns(UserWarning, match=r"1 class\(es\) with a single example \('b'\) only train"):
        train, val = stratified_split(labels, 0.5, seed=0)
    assert Counter(labels[i] for i in val) == {"a": 2, "c": 2}
    assert 3 in train.tolist() and sorted([*train, *val]) == list(range(8))


def test_empty_validation_when_every_class_is_a_single_example_or_fraction_is_zero() -> None:
    with pytest.warns(UserWarning, match="single example"):
        train, val = stratified_split(["a", "b", "c"], 0.5, seed=0)
    assert train.tolist() == [0, 1, 2] and val.size == 0
    train, val = stratified_split(["a", "b"] * 10, 0.0, seed=0)
    assert len(train) == 20 and val.size == 0


def test_bad_fraction() -> None:
    for fraction in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="validation fraction"):
            stratified_split(["a", "b"], fraction, seed=0)


def test_split_samples() -> None:
    samples = Samples(
        items=[f"t{i}" for i in range(10)],
        labels=["x", "y"] * 5,
        modality="text",
        origins=[f"row {i}" for i in range(10)],
    )
    train, val = split_samples(samples, 0.2, seed=0)
    assert len(train) == 8 and len(val) == 2
    assert set(train.items).isdisjoint(val.items)
    assert sorted(val.labels) == ["x", "y"]
    unlabelled = Samples(items=["a"], labels=None, modality="text", origins=["a"])
    with pytest.raises(ConfigError, match="unlabelled"):
        split_samples(unlabelled, 0.2, seed=0)
