import numpy as np
import pytest

from transferkit.adapt.selection import confident_pseudo_labels, soft_neighbourhood_density
from transferkit.errors import DataError


def _clustered_probs(rng: np.random.Generator, sharpness: float) -> np.ndarray:
    labels = rng.integers(0, 3, size=90)
    logits = rng.normal(size=(90, 3)) + sharpness * np.eye(3)[labels]
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_snd_prefers_tight_class_clusters_over_scattered_predictions():
    rng = np.random.default_rng(0)
    scattered = rng.dirichlet(np.full(3, 0.3), size=90)  # (90, 3): predictions spread over the simplex
    assert soft_neighbourhood_density(_clustered_probs(rng, 6.0)) > soft_neighbourhood_density(scattered) + 0.2


def test_snd_rejects_a_single_sample():
    with pytest.raises(DataError, match="N >= 2"):
        soft_neighbourhood_density(np.ones((1, 3)) / 3)


def test_pseudo_labels_keep_a_share_of_every_predicted_class():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.45, 0.55]])
    indices, labels = confident_pseudo_labels(probs, fraction=0.5)
    assert indices.tolist() == [0, 1, 4]  # top 2 of the 4 predicted class 0, and the lone class 1
    assert labels.tolist() == [0, 0, 1]
    indices, _ = confident_pseudo_labels(probs, fraction=1.0, threshold=0.75)
    assert indices.tolist() == [0, 1]


def test_density_ratio_upweights_source_samples_that_look_like_the_target():
    from transferkit.adapt.selection import density_ratio

    rng = np.random.default_rng(0)
    source = rng.normal(size=(200, 2))
    target = rng.normal(loc=[1.5, 0.0], size=(200, 2))
    weights = density_ratio(source, target)
    assert weights.shape == (200,) and abs(weights.mean() - 1) < 1e-9
    near, far = source[:, 0] > 1.0, source[:, 0] < -1.0
    assert weights[near].mean() > 3 * weights[far].mean()


def test_importance_weighted_risk_is_the_plain_mean_under_no_shift_and_weights_errors_otherwise():
    from transferkit.adapt.selection import importance_weighted_risk

    losses = np.array([0.0, 1.0, 0.0, 1.0])
    assert importance_weighted_risk(losses, np.ones(4)) == pytest.approx(0.5)
    tilted = np.array([0.1, 1.9, 0.1, 1.9])  # the misclassified samples are the target-like ones
    assert importance_weighted_risk(losses, tilted, control_variate=False) == pytest.approx(0.95)
    assert importance_weighted_risk(losses, tilted) > 0.5
