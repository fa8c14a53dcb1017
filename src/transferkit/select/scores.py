"""Transferability scores: how well a backbone's frozen features suit a labelled target task.

A score is a function ``(features (N, D), labels (N,)) -> float``, higher meaning "expected to transfer
better", computed without training the backbone. Scores that also need the source task's predictions
(LEEP, NCE) are registered with ``needs_source_probs=True`` and receive them as the keyword argument
``source_probs`` ``(N, C_source)``, the softmax of the backbone's pretrained head.

Registered here:

* ``logme``: LogME, the log marginal evidence of a Bayesian linear model (You et al., ICML 2021).
* ``leep``: Log Expected Empirical Prediction (Nguyen et al., ICML 2020).
* ``nce``: Negative Conditional Entropy of the target labels given the source argmax (Tran et al., ICCV 2019).
* ``h_score``: H-score, ``tr(cov(f)^-1 cov(E[f|y]))`` (Bao et al., ICIP 2019).
* ``h_score_shrink``: H-score with a Ledoit-Wolf covariance (Ibrahim et al., ICLR 2023), stable when N < D.
* ``knn_cv`` and ``linear_cv``: cross-validated accuracy of a k-NN and of a logistic-regression probe.

A user adds a score by registering a function:

    >>> @SCORES.register("fisher_ratio", description="between / within class variance")
    ... def fisher_ratio(features, labels): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transferkit.errors import ConfigError, DataError
from transferkit.registry import Registry

ScoreFn = Callable[..., float]


@dataclass(frozen=True)
class ScoreEntry:
    """One registered transferability score.

    Attributes:
        name: what ``--scores`` and ``rank_backbones(scores=...)`` call it.
        fn: ``fn(features, labels)`` or, with ``needs_source_probs``, ``fn(features, labels, source_probs=...)``.
        description: one line for ``transferkit scores``.
        needs_source_probs: the score needs the source head's probabilities; backbones without a
            pretrained head get no value for it.
    """

    name: str
    fn: ScoreFn
    description: str
    needs_source_probs: bool = False

    def listing(self) -> tuple[str, ...]:
        return ("needs source head" if self.needs_source_probs else "",)


SCORES: Registry[ScoreEntry] = Registry("score", ScoreEntry, hint="see `transferkit scores`")
"""Transferability scores by name; ``@SCORES.register("name", description=...)`` adds one."""


def compute_score(name: str, features: np.ndarray, labels: np.ndarray, *,
                  source_probs: np.ndarray | None = None) -> float:
    """Check the inputs, then compute the registered score ``name``.

    Args:
        name: a registered score.
        features: ``(N, D)`` frozen features of the target samples.
        labels: ``(N,)`` integer class ids ``0 .. C-1``.
        source_probs: ``(N, C_source)`` source-head probabilities, for scores that need them.

    Raises:
        ConfigError: unknown score, or a score that needs ``source_probs`` called without them.
        DataError: shapes that disagree, non-finite features, or fewer than two classes.
    """
    entry = SCORES.get(name)
    features, labels = check_inputs(features, labels)
    if entry.needs_source_probs:
        if source_probs is None:
            raise ConfigError(f"score {name!r} needs the source head's probabilities (a backbone with a "
                              "pretrained head)")
        source_probs = np.asarray(source_probs, dtype=np.float64)
        if source_probs.ndim != 2 or len(source_probs) != len(labels):
            raise DataError(f"source_probs must be (N={len(labels)}, C_source), got {source_probs.shape}")
        return float(entry.fn(features, labels, source_probs=source_probs))
    return float(entry.fn(features, labels))


def check_inputs(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features as float64 ``(N, D)`` and labels as int ``(N,)``, or a DataError saying what is wrong."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise DataError(f"features must be a 2-D array (N, D), got shape {features.shape}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise DataError(f"labels must be 1-D with one entry per feature row ({len(features)}), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise DataError("labels must be non-negative integer class ids")
    if len(np.unique(labels)) < 2:
        raise DataError("a transferability score needs at least two classes in the labels")
    if not np.isfinite(features).all():
        raise DataError("features contain NaN or infinite values")
    return features, labels.astype(np.int64)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    """``(N, C)`` indicator matrix over the classes that occur (empty classes would add nothing)."""
    _, ids = np.unique(labels, return_inverse=True)
    return np.eye(int(ids.max()) + 1)[ids]


@SCORES.register("logme", description="LogME: evidence of a Bayesian linear model on the features (You et al. 2021)")
def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME: the maximised log marginal likelihood per sample of ``y_c = F w + noise``, averaged over classes.

    For each class ``c`` the one-hot target ``y_c`` gets a Gaussian prior ``w ~ N(0, 1/alpha)`` and
    noise ``N(0, 1/beta)``; alpha and beta are set by MacKay's fixed-point iteration, done in the
    eigenbasis of ``F^T F`` from one thin SVD of ``F``, so each step costs O(min(N, D)).

    Returns:
        The mean over classes of ``log p(y_c | F, alpha*, beta*) / N`` (higher transfers better).
    """
    n, d = features.shape
    u, s, _ = np.linalg.svd(features, full_matrices=False)  # F = U diag(s) V^T, r = min(N, D)
    sigma = s**2  # eigenvalues of F^T F (the other D - r are 0)
    targets = _one_hot(labels)  # (N, C)
    projected = u.T @ targets  # (r, C): U^T y
    outside = (targets**2).sum(0) - (projected**2).sum(0)  # ||y||^2 - ||U^T y||^2, the part F cannot fit
    evidences = []
    for c in range(targets.shape[1]):
        z = projected[:, c]
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            # posterior mean in the eigenbasis: m_i = beta s_i z_i / (alpha + beta sigma_i)
            m = beta * s * z / (alpha + beta * sigma)
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())  # effective number of parameters
            m2 = float((m**2).sum())
            residual = float(((z - s * m) ** 2).sum() + outside[c])
            new_alpha = gamma / max(m2, 1e-12)
            new_beta = max(n - gamma, 1e-12) / max(residual, 1e-12)
            converged = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        m = beta * s * z / (alpha + beta * sigma)
        m2 = float((m**2).sum())
        residual = float(((z - s * m) ** 2).sum() + outside[c])
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2
                    - beta / 2 * residual - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _label_given_source(labels: np.ndarray, source_probs: np.ndarray) -> np.ndarray:
    """Empirical ``P(y | z)`` ``(C_source, C)`` from the soft joint ``P(y, z) = mean_i theta_z(x_i) [y_i = y]``."""
    joint = source_probs.T @ _one_hot(labels) / len(labels)  # (Z, C)
    marginal = joint.sum(1, keepdims=True)  # P(z)
    return joint / np.maximum(marginal, 1e-300)


@SCORES.register("leep", needs_source_probs=True,
                 description="LEEP: log-likelihood of the source head re-mapped to the target labels "
                             "(Nguyen et al. 2020)")
def leep(features: np.ndarray, labels: np.ndarray, *, source_probs: np.ndarray) -> float:
    """LEEP: ``mean_i log sum_z P(y_i | z) theta_z(x_i)``, with ``P(y | z)`` estimated on the same data.

    ``features`` are unused: LEEP sees the backbone only through its source head's probabilities.
    """
    del features
    _, ids = np.unique(labels, return_inverse=True)
    expected = source_probs @ _label_given_source(ids, source_probs)  # (N, C): the "dummy" target classifier
    return float(np.mean(np.log(np.maximum(expected[np.arange(len(ids)), ids], 1e-300))))


@SCORES.register("nce", needs_source_probs=True,
                 description="NCE: -H(target label | source argmax label) (Tran et al. 2019)")
def nce(features: np.ndarray, labels: np.ndarray, *, source_probs: np.ndarray) -> float:
    """NCE: the negative conditional entropy ``-H(Y | Z)`` with ``Z`` the source head's argmax label.

    ``features`` are unused. 0 means the source label determines the target label; lower is worse.
    """
    del features
    _, ids = np.unique(labels, return_inverse=True)
    source = source_probs.argmax(1)
    joint = np.zeros((source_probs.shape[1], int(ids.max()) + 1))
    np.add.at(joint, (source, ids), 1.0 / len(ids))  # P(z, y)
    marginal = joint.sum(1, keepdims=True)  # P(z)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log((joint / np.maximum(marginal, 1e-300))[nonzero])).sum())


def _class_mean_covariance(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``cov(E[f | y])`` ``(D, D)``: the covariance of each sample replaced by its class mean."""
    centred = features - features.mean(0)
    _, ids = np.unique(labels, return_inverse=True)
    means = np.stack([centred[ids == c].mean(0) for c in range(int(ids.max()) + 1)])  # (C, D)
    weights = np.bincount(ids) / len(ids)
    return (means * weights[:, None]).T @ means


@SCORES.register("h_score", description="H-score: tr(cov(f)^-1 cov(E[f|y])) (Bao et al. 2019)")
def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score with the plain sample covariance and its pseudo-inverse.

    With fewer samples than dimensions the sample covariance is singular and the score saturates
    near ``C - 1`` for any features; ``h_score_shrink`` is the stable variant.
    """
    centred = features - features.mean(0)
    cov_f = centred.T @ centred / len(features)
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ _class_mean_covariance(features, labels)))


@SCORES.register("h_score_shrink",
                 description="H-score with a Ledoit-Wolf shrunk covariance, stable when N < D (Ibrahim et al. 2023)")
def h_score_shrink(features: np.ndarray, labels: np.ndarray) -> float:
    """Regularised H-score ``tr(cov_a(f)^-1 (1 - a) cov(E[f|y]))``.

    ``cov_a(f) = (1 - a) cov(f) + a mu I`` is scikit-learn's Ledoit-Wolf estimate with its fitted
    shrinkage ``a``; the between-class covariance is shrunk by the same ``1 - a``, so the score stays
    in ``[0, C - 1]`` like the plain H-score.
    """
    from sklearn.covariance import LedoitWolf

    estimate = LedoitWolf(assume_centered=False).fit(features)
    cov_g = (1.0 - estimate.shrinkage_) * _class_mean_covariance(features, labels)
    return float(np.trace(np.linalg.solve(estimate.covariance_, cov_g)))


def _cv_folds(labels: np.ndarray, seed: int = 0):
    """Stratified folds (at most 5, at least 2) that every class can fill; None when a class has one sample."""
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(np.unique(labels, return_inverse=True)[1]).min())
    if smallest < 2:
        raise DataError("cross-validated scores need at least two samples of every class")
    return StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)


@SCORES.register("knn_cv", description="cross-validated accuracy of a 5-nearest-neighbour classifier (cosine)")
def knn_cv(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean stratified-CV accuracy of k-NN (k = 5, cosine distance) on centred features."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = _cv_folds(labels)
    k = max(1, min(5, len(labels) - len(labels) // folds.n_splits - 1))
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    return float(cross_val_score(knn, features - features.mean(0), labels, cv=folds).mean())


@SCORES.register("linear_cv", description="cross-validated accuracy of a logistic-regression probe (C = 1)")
def linear_cv(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean stratified-CV accuracy of an L2 logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    return float(cross_val_score(probe, features, labels, cv=_cv_folds(labels)).mean())
