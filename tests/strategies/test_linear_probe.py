"""Linear probe: the folded standardisation, and the strategy end to end on a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import support
from transferkit import TransferClassifier
from transferkit.backbones import create_backbone
from transferkit.backbones.hf import TextTransformerBackbone
from transferkit.features import cache_dir
from transferkit.strategies.linear_probe import fit_probe


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def features_and_labels(num_classes: int, n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features on very different scales and offsets, plus a constant column."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    centres = rng.normal(size=(num_classes, 5))
    x = centres[labels] + rng.normal(size=(n, 5))
    x = x * np.array([1.0, 100.0, 0.01, 5.0, 1.0]) + np.array([0.0, -300.0, 7.0, 2.0, 50.0])
    return np.hstack([x, np.full((n, 1), 3.0)]).astype(np.float32), labels


@pytest.mark.parametrize("num_classes", [2, 3])
def test_folded_probe_predicts_like_the_sklearn_pipeline(num_classes: int) -> None:
    x, y = features_and_labels(num_classes)
    weight, bias, chosen = fit_probe(x, y, num_classes, c=0.5, seed=0)
    assert chosen == 0.5
    assert weight.shape == (num_classes, x.shape[1]) and bias.shape == (num_classes,)
    sklearn_probe = LogisticRegression(C=0.5, max_iter=2000, random_state=0)
    pipeline = make_pipeline(StandardScaler(), sklearn_probe).fit(x, y)
    x_new, _ = features_and_labels(num_classes, n=30, seed=1)
    ours = softmax(x_new.astype(np.float64) @ weight.T + bias)
    np.testing.assert_allclose(ours, pipeline.predict_proba(x_new), atol=1e-4)
    assert (ours.argmax(1) == pipeline.predict(x_new)).all()


def test_a_dead_dimension_gets_no_weight() -> None:
    """A column that is ~1e-32 everywhere (as in all-MiniLM-L6-v2) must not fold into a 1e30 weight."""
    x, y = features_and_labels(2)
    rng = np.random.default_rng(3)
    x = np.hstack([x, (rng.normal(size=(len(x), 1)) * 1e-32).astype(np.float32)])
    weight, bias, _ = fit_probe(x, y, 2, c=1.0, seed=0)
    assert np.isfinite(weight).all() and np.abs(weight).max() < 1e3
    assert (weight[:, -1] == 0).all()
    shifted = x.copy()
    shifted[:, -1] = 1e-6  # a tiny change in the dead column no longer moves the logits
    np.testing.assert_allclose(shifted @ weight.T + bias, x @ weight.T + bias, atol=1e-5)


def test_two_classes_give_two_opposite_rows() -> None:
    x, y = features_and_labels(2)
    weight, bias, _ = fit_probe(x, y, 2, c=1.0, seed=0)
    assert weight.shape[0] == 2
    np.testing.assert_allclose(weight[0], -weight[1], rtol=1e-6)
    np.testing.assert_allclose(bias[0], -bias[1], rtol=1e-6)


def test_c_is_chosen_by_cross_validation_when_not_given() -> None:
    x, y = features_and_labels(2, n=40)
    weight, _, chosen = fit_probe(x, y, 2, c=None, seed=0)
    assert np.isclose(np.log10(chosen) * 2, round(np.log10(chosen) * 2))  # one of logspace(-4, 2, 13)
    assert 1e-4 <= chosen <= 1e2
    assert np.isfinite(weight).all()


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str], list[str], list[str]]:
    helpers = support
    return (*helpers.sentiment_texts(20, seed=0), *helpers.sentiment_texts(20, seed=1))


def test_linear_probe_keeps_the_backbone_and_beats_chance(tiny_bert_dir: Path, texts: tuple) -> None:
    x, y, x_test, y_test = texts
    name = f"hf:{tiny_bert_dir}"
    clf = TransferClassifier(backbone=name, strategy="linear_probe", progress=False).fit(x, y)
    assert clf.backbone_trained_ is False and clf.history_ == []
    untouched = create_backbone(name).state_dict()
    fitted = clf.model_.backbone.state_dict()
    assert fitted.keys() == untouched.keys()
    assert all(torch.equal(fitted[k], untouched[k]) for k in fitted)
    assert not any(p.requires_grad for p in clf.model_.backbone.parameters())
    assert clf.score(x_test, y_test) >= 0.8


def test_a_second_fit_reads_features_from_the_cache(
    tiny_bert_dir: Path, texts: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y, _, _ = texts
    calls = []
    original = TextTransformerBackbone.forward_features

    def counting(self, **batch):
        calls.append(len(batch["input_ids"]))
        return original(self, **batch)

    monkeypatch.setattr(TextTransformerBackbone, "forward_features", counting)
    first = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False).fit(x, y)
    assert sum(calls) == len(x)
    assert len(list((cache_dir() / "features").glob("*.safetensors"))) == 1

    calls.clear()
    second = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False, strategy_params={"c": 0.3}).fit(x, y)
    assert calls == []
    assert second.strategy_info_["probe_c"] == 0.3
    # same cached features, another C: another head
    assert not torch.equal(first.model_.head.fc.weight, second.model_.head.fc.weight)
