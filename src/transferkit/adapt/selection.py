"""Choosing adaptation hyperparameters and pseudo-labels without target labels.

Target labels are never read here: every function looks only at the model's outputs on target data.
"""

import numpy as np
from scipy.special import softmax

from transferkit.errors import DataError


def soft_neighbourhood_density(target_probs: np.ndarray, *, temperature: float = 0.05) -> float:
    """Soft neighbourhood density (Saito et al., ICCV 2021): higher means a better adapted model.

    Each target sample's predicted distribution is compared with every other one; the score is the
    mean entropy of the softmax over these similarities. A model whose target predictions form tight,
    consistent neighbourhoods scores high; one that scatters them over the simplex scores low. Known
    blind spot: near-uniform predictions for every sample also look dense, so pair it with a check
    that the model is not trivially unsure.

    Args:
        target_probs: ``(N, C)`` class probabilities on unlabelled target samples.
        temperature: softmax temperature over similarities (0.05 as in the paper).

    Raises:
        DataError: fewer than two target samples.
    """
    probs = np.asarray(target_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < 2:
        raise DataError(f"soft neighbourhood density needs (N >= 2, C) target probabilities, got {probs.shape}")
    normed = probs / np.maximum(np.linalg.norm(probs, axis=1, keepdims=True), 1e-12)
    similarity = normed @ normed.T  # (N, N)
    np.fill_diagonal(similarity, -np.inf)  # a sample is not its own neighbour
    neighbours = softmax(similarity / temperature, axis=1)
    entropy = -(neighbours * np.log(np.maximum(neighbours, 1e-12))).sum(axis=1)
    return float(entropy.mean())


def confident_pseudo_labels(target_probs: np.ndarray, *, fraction: float = 0.5,
                            threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pick target samples to pseudo-label: the most confident ``fraction`` of each predicted class.

    Taking a share per class, rather than one global confidence cut, keeps classes the model is less
    sure about from vanishing from the pseudo-labelled set (class balance as in CBST, Zou et al. 2018).

    Args:
        target_probs: ``(N, C)`` class probabilities.
        fraction: share of each predicted class to keep, in (0, 1].
        threshold: if given, also drop samples whose top probability is below it.

    Returns:
        ``(indices, labels)``: positions into ``target_probs`` and their predicted classes.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    probs = np.asarray(target_probs)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    keep: list[np.ndarray] = []
    for label in np.unique(predicted):
        members = np.flatnonzero(predicted == label)
        count = max(1, int(round(fraction * len(members))))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:count]])
    indices = np.sort(np.concatenate(keep))
    if threshold is not None:
        indices = indices[confidence[indices] >= threshold]
    return indices, predicted[indices]


def density_ratio(source_x: np.ndarray, target_x: np.ndarray, *, seed: int = 0, clip: float = 20.0) -> np.ndarray:
    """Importance weights ``p_target(x) / p_source(x)`` of the source samples, from a domain classifier.

    A logistic regression tells source from target; its out-of-fold probabilities (so that a
    sample's weight is not fitted to that sample) give ``w = P(t|x) / P(s|x) * n_s / n_t``
    (Bickel et al., 2007). Weights are clipped at ``clip`` and renormalised to mean 1, since a few
    huge weights would otherwise decide the whole estimate.

    Args:
        source_x: ``(N_s, D)`` source features.
        target_x: ``(N_t, D)`` target features, in the same space.

    Returns:
        ``(N_s,)`` weights with mean 1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([source_x, target_x])
    domain = np.r_[np.zeros(len(source_x)), np.ones(len(target_x))]
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    p_target = cross_val_predict(model, x, domain, cv=folds, method="predict_proba")[: len(source_x), 1]
    p_target = np.clip(p_target, 1e-6, 1 - 1e-6)
    weights = p_target / (1 - p_target) * len(source_x) / len(target_x)
    weights = np.minimum(weights / weights.mean(), clip)
    return weights / weights.mean()


def importance_weighted_risk(losses: np.ndarray, weights: np.ndarray, *, control_variate: bool = True) -> float:
    """Target risk estimated from source validation losses and density-ratio weights.

    Plain importance-weighted validation (Sugiyama et al., JMLR 2007) averages ``w * loss``; with
    ``control_variate`` the weights' own known mean (1) removes much of its variance, as Deep
    Embedded Validation does (You et al., ICML 2019): ``mean(w l) + eta * mean(w) - eta`` with
    ``eta = -cov(w l, w) / var(w)``.

    Args:
        losses: ``(N,)`` per-sample losses on held-out source samples.
        weights: ``(N,)`` their density-ratio weights.
    """
    losses, weights = np.asarray(losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    weighted = weights * losses
    if not control_variate or weights.var() < 1e-12:
        return float(weighted.mean())
    eta = -np.cov(weighted, weights)[0, 1] / weights.var(ddof=1)
    return float(weighted.mean() + eta * weights.mean() - eta)
