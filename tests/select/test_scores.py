"""Transferability scores: the contract over every registered score, then each score's own properties."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from transferkit.errors import ConfigError, DataError
from transferkit.select import SCORES, compute_score
from transferkit.select.scores import h_score, h_score_shrink, logme


def gaussian_classes(n: int = 120, d: int = 32, classes: int = 3, separation: float = 3.0,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first ``classes`` dimensions carry the label (shifted by ``separation``), the rest noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    features = rng.standard_normal((n, d))
    features[:, :classes] += separation * np.eye(classes)[labels]
    return features, labels


def source_probs_for(labels: np.ndarray, informative: bool, seed: int = 0, num_source: int = 10) -> np.ndarray:
    """Source-head probabilities: peaked on a source class tied to the label, or random Dirichlet draws."""
    rng = np.random.default_rng(seed)
    if not informative:
        return rng.dirichlet(np.ones(num_source), len(labels))
    logits = rng.standard_normal((len(labels), num_source))
    logits[np.arange(len(labels)), 2 * labels] += 4.0  # source class 2y is what the target class y looks like
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.mark.parametrize("name", SCORES.names())
def test_every_score_prefers_separable_features_to_noise(name: str) -> None:
    features, labels = gaussian_classes()
    noise = np.random.default_rng(1).standard_normal(features.shape)
    entry = SCORES.get(name)
    if entry.needs_source_probs:
        good = compute_score(name, features, labels, source_probs=source_probs_for(labels, informative=True))
        bad = compute_score(name, noise, labels, source_probs=source_probs_for(labels, informative=False))
    else:
        good, bad = compute_score(name, features, labels), compute_score(name, noise, labels)
    assert isinstance(good, float) and np.isfinite(good) and np.isfinite(bad)
    assert good > bad, (name, good, bad)


def test_registering_a_score_makes_it_computable() -> None:
    @SCORES.register("test_centroid_gap", description="distance between the two class means")
    def centroid_gap(features: np.ndarray, labels: np.ndarray) -> float:
        return float(np.linalg.norm(features[labels == 0].mean(0) - features[labels == 1].mean(0)))

    try:
        features, labels = gaussian_classes(classes=2)
        assert compute_score("test_centroid_gap", features, labels) > 2.0
        assert "test_centroid_gap" in SCORES
        with pytest.raises(ValueError, match="already registered"):
            SCORES.register("test_centroid_gap", description="again")(centroid_gap)
    finally:
        SCORES.remove("test_centroid_gap")


def test_bad_inputs_are_named() -> None:
    features, labels = gaussian_classes()
    with pytest.raises(ConfigError, match="unknown score 'nope'"):
        compute_score("nope", features, labels)
    with pytest.raises(ConfigError, match="leep.*source head"):
        compute_score("leep", features, labels)
    with pytest.raises(DataError, match="one entry per feature row"):
        compute_score("logme", features, labels[:-1])
    with pytest.raises(DataError, match="at least two classes"):
        compute_score("logme", features, np.zeros(len(labels), dtype=int))
    bad = features.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compute_score("h_score", bad, labels)
    with pytest.raises(DataError, match=r"source_probs must be \(N=120"):
        compute_score("nce", features, labels, source_probs=np.ones((3, 4)) / 4)
    with pytest.raises(DataError, match="two samples of every class"):
        compute_score("knn_cv", features[:4], np.array([0, 0, 0, 1]))


# --- LogME -----------------------------------------------------------------------------------------


def direct_log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) straight from its definition: y ~ N(0, I / beta + F F^T / alpha)."""
    cov = np.eye(len(target)) / beta + features @ features.T / alpha
    return float(multivariate_normal(mean=np.zeros(len(target)), cov=cov).logpdf(target))


@pytest.mark.parametrize(("n", "d"), [(40, 8), (12, 30)])  # more samples than dimensions, and fewer
def test_logme_is_the_maximised_evidence(n: int, d: int) -> None:
    from scipy.optimize import minimize

    features, labels = gaussian_classes(n=n, d=d, classes=2, separation=1.0, seed=3)
    per_class = []
    for c in (0, 1):
        target = (labels == c).astype(float)
        # maximise the evidence over (log alpha, log beta) by a generic optimiser, from the definition
        result = minimize(lambda p, t=target: -direct_log_evidence(features, t, *np.exp(p)), x0=np.zeros(2),
                          method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 2000})
        per_class.append(-result.fun / n)
    assert logme(features, labels, tol=1e-10, max_iter=10_000) == pytest.approx(np.mean(per_class), abs=1e-5)


def test_logme_grows_with_class_separation_and_ignores_feature_order() -> None:
    scores = [logme(*gaussian_classes(separation=s)) for s in (0.0, 1.0, 2.0, 4.0)]
    assert scores == sorted(scores)
    features, labels = gaussian_classes()
    permuted = features[:, np.random.default_rng(0).permutation(features.shape[1])]
    assert logme(permuted, labels) == pytest.approx(logme(features, labels), abs=1e-9)


# --- H-score ---------------------------------------------------------------------------------------


def test_h_score_is_invariant_to_invertible_linear_maps_and_bounded() -> None:
    features, labels = gaussian_classes(n=300, d=10, classes=3)
    mixing = np.random.default_rng(2).standard_normal((10, 10)) + 3 * np.eye(10)
    assert h_score(features @ mixing, labels) == pytest.approx(h_score(features, labels), rel=1e-6)
    # tr(cov(f)^-1 cov(E[f|y])) is a sum of C - 1 squared canonical correlations: in [0, C - 1]
    assert 0.0 < h_score(features, labels) <= 2.0 + 1e-9


def test_h_score_saturates_with_fewer_samples_than_dimensions_but_the_shrunk_one_does_not() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(30) % 2
    noise = rng.standard_normal((30, 100))
    informative = noise.copy()
    informative[:, 0] += 4.0 * labels
    # N < D: the sample covariance is singular and H-score reaches its bound C - 1 = 1 for noise too
    assert h_score(noise, labels) == pytest.approx(1.0, abs=1e-6)
    assert h_score_shrink(informative, labels) > h_score_shrink(noise, labels) + 0.2


# --- LEEP and NCE ---------------------------------------------------------------------------------


def test_leep_and_nce_on_a_source_head_that_determines_the_label() -> None:
    labels = np.arange(60) % 3
    perfect = np.eye(6)[2 * labels]  # one-hot source predictions, one source class per target class
    uniform = np.full((60, 6), 1 / 6)
    assert compute_score("nce", np.zeros((60, 1)), labels, source_probs=perfect) == pytest.approx(0.0, abs=1e-12)
    assert compute_score("leep", np.zeros((60, 1)), labels, source_probs=perfect) == pytest.approx(0.0, abs=1e-9)
    # an uninformative source head: both equal -H(Y) = -log 3 for balanced classes
    assert compute_score("nce", np.zeros((60, 1)), labels, source_probs=uniform) == pytest.approx(-np.log(3))
    assert compute_score("leep", np.zeros((60, 1)), labels, source_probs=uniform) == pytest.approx(-np.log(3))


def test_leep_matches_its_definition_on_soft_predictions() -> None:
    labels = np.arange(40) % 2
    probs = source_probs_for(labels, informative=True, seed=4, num_source=5)
    joint = np.zeros((5, 2))
    for theta, y in zip(probs, labels, strict=True):
        joint[:, y] += theta / len(labels)
    conditional = joint / joint.sum(1, keepdims=True)
    expected = np.mean([np.log(theta @ conditional[:, y]) for theta, y in zip(probs, labels, strict=True)])
    assert compute_score("leep", np.zeros((40, 1)), labels, source_probs=probs) == pytest.approx(expected)
    # NCE uses the argmax only, so sharpening the probabilities leaves it unchanged
    sharper = probs**4 / (probs**4).sum(1, keepdims=True)
    assert compute_score("nce", np.zeros((40, 1)), labels, source_probs=sharper) == pytest.approx(
        compute_score("nce", np.zeros((40, 1)), labels, source_probs=probs))
