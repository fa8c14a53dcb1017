"""Input transforms chosen by label-free selection: the criterion must pick the one that makes domains match."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.adapt import DA_METHODS, DomainAdaptationClassifier
from transferkit.adapt.search import search_features
from transferkit.adapt.transforms import TRANSFORMS
from transferkit.errors import ConfigError, DataError


def scaled_domains(seed: int, n: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three classes told apart by the direction of non-negative 6-D rows; each row has a random scale.

    Source scales span e^-1..e^1, target scales e^-2.5..e^0: on raw rows the domains differ (and a
    linear classifier with an intercept errs on short target rows); after L2 normalisation they match.
    """
    rng = np.random.default_rng(seed)
    directions = np.abs(rng.normal(size=(3, 6))) + 0.3
    ys = np.repeat(np.arange(3), n // 3)

    def draw(scale: np.ndarray) -> np.ndarray:
        return np.abs(directions[ys] + rng.normal(scale=0.45, size=(n, 6))) * scale[:, None]

    return draw(np.exp(rng.uniform(-1, 1, size=n))), ys, draw(np.exp(rng.uniform(-2.5, 0, size=n))), ys.copy()


def test_transforms_are_row_wise_and_named() -> None:
    x = np.array([[1.0, 3.0, 0.0], [4.0, 0.0, 0.0]])
    np.testing.assert_allclose(TRANSFORMS.get("hellinger").fn(x), np.sqrt([[0.25, 0.75, 0], [1, 0, 0]]))
    np.testing.assert_allclose(np.linalg.norm(TRANSFORMS.get("l2").fn(x), axis=1), 1.0)
    np.testing.assert_allclose(TRANSFORMS.get("l2").fn(x)[:1], TRANSFORMS.get("l2").fn(x[:1]))
    assert {"identity", "hellinger", "l2"} <= set(TRANSFORMS.names())
    with pytest.raises(DataError, match="negative values"):
        TRANSFORMS.get("hellinger").fn(-x)
    with pytest.raises(ConfigError, match="unknown input transform 'log'"):
        TRANSFORMS.get("log")


def test_dev_prefers_the_transform_that_matches_the_domains() -> None:
    """Over seeds, DEV picks L2 rows mostly and its choice beats always keeping raw rows by a margin."""
    picks, chosen, raw = [], [], []
    for seed in range(6):
        xs, ys, xt, yt = scaled_domains(seed)
        outcome = search_features(DA_METHODS.get("source_only"), xs, ys, xt, fixed={"C": 0.1},
                                  transforms=["identity", "l2"], combine="select", oracle_eval=(xt, yt))
        picks.append(outcome.result.transform)
        chosen.append(float((outcome.model.predict_proba(xt).argmax(axis=1) == yt).mean()))
        raw.append(next(c.scores["target_accuracy"] for c in outcome.result.candidates if c.transform == "identity"))
        assert len(outcome.result.candidates) == 2
    assert picks.count("l2") >= 4
    assert np.mean(chosen) > np.mean(raw) + 0.1


def test_chosen_transform_travels_with_the_model() -> None:
    xs, ys, xt, yt = scaled_domains(0)
    outcome = search_features(DA_METHODS.get("coral"), xs, ys, xt, fixed={"C": 0.1}, transforms=["identity", "l2"],
                              combine="select", oracle_eval=(xt, yt))
    assert outcome.result.transform == "l2" and outcome.result.oracle_transform == "l2"
    # the model takes raw rows: rescaling a target row must not change its prediction
    np.testing.assert_allclose(outcome.model.predict_proba(xt * 7.0), outcome.model.predict_proba(xt), atol=1e-8)
    with pytest.raises(TypeError, match="not an Affine map"):
        outcome.model.as_linear()  # a non-linear input transform cannot fold into one linear layer
    with pytest.raises(ConfigError, match="unknown input transform"):
        search_features(DA_METHODS.get("coral"), xs, ys, xt, transforms=["identity", "log"])


def test_estimator_searches_transforms() -> None:
    xs, ys, xt, yt = scaled_domains(0)
    X, y = np.vstack([xs, xt]), np.r_[ys, np.full(len(xt), -1)]
    domains = np.r_[np.ones(len(xs)), -np.ones(len(xt))]
    clf = DomainAdaptationClassifier("source_only", transforms=("identity", "l2"), combine="select",
                                     method_params={"C": 0.1}).fit(X, y, domains)
    plain = DomainAdaptationClassifier("source_only", method_params={"C": 0.1}).fit(X, y, domains)
    assert clf.search_.transform == "l2" and plain.search_.transform == "identity"
    assert clf.score(xt, yt) > plain.score(xt, yt) + 0.2
    assert clf.get_params()["transforms"] == ("identity", "l2")


def test_average_combines_each_transforms_own_choice() -> None:
    """``combine="average"``: one label-free choice per transform, probabilities averaged exactly."""
    xs, ys, xt, yt = scaled_domains(1)
    method = DA_METHODS.get("source_only")
    outcome = search_features(method, xs, ys, xt, transforms=["identity", "l2"], oracle_eval=(xt, yt))
    result = outcome.result
    assert result.transform == "average" and result.params == {}
    assert [m["transform"] for m in result.members] == ["identity", "l2"]
    assert len(result.candidates) == 2 * len(method.grid["C"])
    expected = []
    for member in result.members:  # each member is that transform's best candidate by DEV
        own = [c for c in result.candidates if c.transform == member["transform"]]
        assert member["params"] == max(own, key=lambda c: (c.scores["dev"], c.scores["snd"])).params
        single = search_features(method, xs, ys, xt, fixed=member["params"], transforms=[member["transform"]])
        expected.append(single.model.predict_proba(xt))
    np.testing.assert_allclose(outcome.model.predict_proba(xt), np.mean(expected, axis=0), atol=1e-10)
    assert outcome.model.transform(xt).shape == (len(xt), 12)  # both members' spaces side by side
    with pytest.raises(TypeError, match="not one linear layer"):
        outcome.model.as_linear()
    with pytest.raises(ConfigError, match="unknown combine rule 'vote'"):
        search_features(method, xs, ys, xt, transforms=["identity", "l2"], combine="vote")


def test_estimator_averages_by_default() -> None:
    xs, ys, xt, yt = scaled_domains(0)
    X, y = np.vstack([xs, xt]), np.r_[ys, np.full(len(xt), -1)]
    domains = np.r_[np.ones(len(xs)), -np.ones(len(xt))]
    clf = DomainAdaptationClassifier("source_only", transforms=("identity", "l2"),
                                     method_params={"C": 0.1}).fit(X, y, domains)
    assert clf.search_.transform == "average" and len(clf.search_.members) == 2
    raw = DomainAdaptationClassifier("source_only", method_params={"C": 0.1}).fit(X, y, domains)
    assert clf.score(xt, yt) > raw.score(xt, yt)  # half of the average is the L2 model that matches the domains
