"""Feature-level methods on shifted Gaussian domains: every method must beat source-only by a margin."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.adapt import DA_METHODS, DomainAdaptationClassifier
from transferkit.adapt.search import search_features
from transferkit.errors import ConfigError, DataError, NotFittedError


def shifted_domains(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three Gaussian classes in 6-D; the target is the source rotated, scaled and shifted.

    Standardising the target with source statistics leaves it far off, so source-only is poor;
    matching moments (and more) undoes most of the shift.
    """
    rng = np.random.default_rng(seed)
    means = np.array([[0, 0, 0, 0, 0, 0], [3, 0, 0, 1, 0, 0], [0, 3, 0, 0, 1, 0]], dtype=float)
    ys = np.repeat(np.arange(3), n // 3)
    yt = np.repeat(np.arange(3), n // 3)
    xs = means[ys] + rng.normal(scale=0.8, size=(n, 6))
    angle = 0.9
    rotation = np.eye(6)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    xt = (means[yt] + rng.normal(scale=0.8, size=(n, 6))) @ rotation * np.array([2.0, 0.5, 1, 1, 3, 1]) + 4.0
    return xs, ys, xt, yt


def accuracy(name: str, **params: float) -> float:
    xs, ys, xt, yt = shifted_domains()
    entry = DA_METHODS.get(name)
    model = entry.fn(xs, ys, xt, seed=0, params=entry.settings(params))
    return float((model.predict_proba(xt).argmax(axis=1) == yt).mean())


FEATURE_METHODS = [m.name for m in DA_METHODS if m.level == "features" and m.name != "source_only"]


@pytest.mark.parametrize("name", FEATURE_METHODS)
def test_every_feature_method_beats_source_only_on_shifted_gaussians(name: str) -> None:
    baseline = accuracy("source_only")
    assert baseline < 0.75  # the shift really hurts
    assert accuracy(name) > baseline + 0.15


@pytest.mark.parametrize("name", [m.name for m in DA_METHODS if m.level == "features"])
def test_contract_probabilities_and_aligned_space(name: str) -> None:
    xs, ys, xt, _ = shifted_domains(n=60)
    model = DA_METHODS.get(name).fn(xs, ys, xt, seed=0, params=DA_METHODS.get(name).settings())
    probs = model.predict_proba(xt)
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert model.transform(xt).shape[1] == model.source_features.shape[1]
    assert len(model.source_features) == len(xs)


@pytest.mark.parametrize("name", [m.name for m in DA_METHODS if m.level == "features"])
def test_every_adapter_folds_into_one_linear_layer(name: str) -> None:
    """``as_linear`` is what a saved adapted model predicts with: it must equal ``predict_proba``."""
    from scipy.special import softmax

    xs, ys, xt, _ = shifted_domains(n=60)
    model = DA_METHODS.get(name).fn(xs, ys, xt, seed=0, params=DA_METHODS.get(name).settings())
    weight, bias = model.as_linear()
    np.testing.assert_allclose(softmax(xt @ weight.T + bias, axis=1), model.predict_proba(xt), atol=1e-8)


def test_folded_binary_adapter_and_a_class_it_never_saw() -> None:
    from scipy.special import softmax

    xs, ys, xt, _ = shifted_domains(n=60)
    keep = ys < 2  # two classes seen; the adapter is told there are three
    model = DA_METHODS.get("coral").fn(xs[keep], ys[keep], xt, seed=0, params=DA_METHODS.get("coral").settings())
    model.num_classes = 3
    weight, bias = model.as_linear()
    probs = softmax(xt @ weight.T + bias, axis=1)
    np.testing.assert_allclose(probs, model.predict_proba(xt), atol=1e-8)
    assert probs[:, 2].max() < 1e-12


def test_hidden_source_rows_are_aligned_but_not_learned() -> None:
    xs, ys, xt, _ = shifted_domains(n=60)
    masked = np.where(np.arange(60) % 2 == 0, -1, ys)
    model = DA_METHODS.get("coral").fn(xs, masked, xt, seed=0, params=DA_METHODS.get("coral").settings())
    assert len(model.source_features) == 60
    assert model.classifier.n_features_in_ == xs.shape[1]


def test_search_reports_candidates_and_the_oracle_separately() -> None:
    xs, ys, xt, yt = shifted_domains()
    outcome = search_features(DA_METHODS.get("coral"), xs, ys, xt, criterion="dev", oracle_eval=(xt, yt))
    result = outcome.result
    assert len(result.candidates) == len(DA_METHODS.get("coral").grid["C"])
    assert {"dev", "iwv", "snd", "source_val", "target_accuracy"} <= result.candidates[0].scores.keys()
    chosen = max(result.candidates, key=lambda c: (c.scores["dev"], c.scores["snd"]))
    assert result.params == chosen.params
    assert result.oracle_params == max(result.candidates, key=lambda c: c.scores["target_accuracy"]).params


def test_search_without_target_labels_has_no_oracle() -> None:
    xs, ys, xt, _ = shifted_domains(n=60)
    outcome = search_features(DA_METHODS.get("coral"), xs, ys, xt, fixed={"C": 0.5})
    assert outcome.result.oracle_params is None and outcome.oracle_model is None
    assert [c.params for c in outcome.result.candidates] == [{"C": 0.5}]
    assert "target_accuracy" not in outcome.result.candidates[0].scores


def test_estimator_follows_sample_domain_and_beats_source_only() -> None:
    xs, ys, xt, yt = shifted_domains()
    X = np.vstack([xs, xt])
    y = np.r_[ys, np.full(len(xt), -1)]
    domains = np.r_[np.ones(len(xs)), -np.ones(len(xt))]
    adapted = DomainAdaptationClassifier("cbst").fit(X, y, sample_domain=domains)
    plain = DomainAdaptationClassifier("source_only").fit(X, y, sample_domain=domains)
    assert adapted.score(xt, yt) > plain.score(xt, yt) + 0.15
    assert adapted.search_.oracle_params is None  # no target labels were given
    assert set(adapted.predict(xt)) <= {0, 1, 2}


def test_estimator_string_labels_and_fixed_params_clone() -> None:
    from sklearn.base import clone

    xs, ys, xt, yt = shifted_domains(n=60)
    names = np.array(["cat", "dog", "owl"])
    X, domains = np.vstack([xs, xt]), np.r_[np.ones(60), -np.ones(60)]
    y = np.r_[names[ys], names[yt]]  # labelled target rows: only reported, never fitted on
    clf = DomainAdaptationClassifier("coral", method_params={"C": 0.1}).fit(X, y, sample_domain=domains)
    assert clf.get_params()["method_params"] == {"C": 0.1} and clone(clf).get_params()["method_params"] == {"C": 0.1}
    assert clf.search_.oracle_params == {"C": 0.1}
    assert set(clf.predict(xt)) <= set(names)


@pytest.mark.parametrize(("domains", "labels", "message"), [
    (np.r_[np.ones(60), np.ones(60)], None, "target domain has no samples"),
    (np.r_[-np.ones(60), -np.ones(60)], None, "no source samples"),
    (np.r_[np.ones(60), -np.ones(60)], np.r_[np.full(60, -1), np.full(60, -1)], "have no label"),
    (np.r_[np.ones(60), -np.ones(60)], np.r_[np.zeros(30), np.ones(30), np.full(60, 7)],
     "classes the source does not have"),
])
def test_estimator_names_bad_input(domains: np.ndarray, labels: np.ndarray | None, message: str) -> None:
    xs, ys, xt, _ = shifted_domains(n=60)
    y = labels if labels is not None else np.r_[ys, np.full(60, -1)]
    with pytest.raises(DataError, match=message):
        DomainAdaptationClassifier("coral").fit(np.vstack([xs, xt]), y, sample_domain=domains)


def test_estimator_rejects_other_widths_unknown_names_and_missing_domains() -> None:
    xs, ys, xt, _ = shifted_domains(n=60)
    X, y, domains = np.vstack([xs, xt]), np.r_[ys, np.full(60, -1)], np.r_[np.ones(60), -np.ones(60)]
    with pytest.raises(NotFittedError):
        DomainAdaptationClassifier().predict(xt)
    with pytest.raises(DataError, match="sample_domain"):
        DomainAdaptationClassifier().fit(X, y)
    with pytest.raises(ConfigError, match="unknown adaptation method"):
        DomainAdaptationClassifier("nope").fit(X, y, sample_domain=domains)
    with pytest.raises(ConfigError, match="has no setting 'gamma'; its settings are C, reg"):
        DomainAdaptationClassifier("coral", method_params={"gamma": 1.0}).fit(X, y, sample_domain=domains)
    with pytest.raises(ConfigError, match="selection criterion"):
        DomainAdaptationClassifier("coral", selection="oracle").fit(X, y, sample_domain=domains)
    clf = DomainAdaptationClassifier("coral", method_params={"C": 1.0}).fit(X, y, sample_domain=domains)
    with pytest.raises(DataError, match="has 4 features"):
        clf.predict(xt[:, :4])


def test_cbst_standardises_each_domain_and_takes_coral_as_an_option() -> None:
    xs, ys, xt, yt = shifted_domains()
    outcome = search_features(DA_METHODS.get("cbst"), xs, ys, xt, fixed={"C": 0.1, "align": True}, oracle_eval=(xt, yt))
    assert [c.params for c in outcome.result.candidates] == [{"C": 0.1, "align": True}]
    # per-domain standardisation undoes the shift that source standardisation leaves in place
    assert accuracy("cbst", standardise="domain") > accuracy("cbst", standardise="source") + 0.15
    with pytest.raises(ConfigError, match="standardise must be one of"):
        DA_METHODS.get("cbst").settings({"standardise": "joint"})
