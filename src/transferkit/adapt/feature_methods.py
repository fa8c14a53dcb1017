"""Feature-level domain adaptation: align source and target arrays, then fit a linear classifier.

Every method here works on ``(N, D)`` arrays (cached backbone features or any user array) and
follows the ``"features"`` contract of ``transferkit.adapt.base``: it is called as
``fn(source_x, source_y, target_x, *, seed, params)`` (``params``: the method's config) with
``source_y`` holding class indices ``0..C-1`` and returns an ``AlignedClassifier``. Target labels never
reach these functions.

Source rows labelled ``-1`` take part in the (label-free) alignment but not in training the
classifier: label-free model selection hides a validation share of the source that way and then
reads its aligned features from ``AlignedClassifier.source_features``.

The adapting methods first standardise each domain with its own mean and standard deviation:
matching the first two moments per feature is the cheapest alignment there is and makes the rest
better conditioned. Then:

* ``source_only``: the baseline every method is compared with; it standardises the target with the
  source statistics, i.e. does not adapt at all.
* ``coral``: CORAL (Sun, Feng & Saenko, AAAI 2016) recolours the whitened source with the target
  covariance.
* ``subspace_alignment``: SA (Fernando et al., ICCV 2013) maps the source PCA basis onto the target one.
* ``entropic_ot``: an entropic optimal-transport plan (Courty et al., TPAMI 2017, with POT) moves
  each source sample to the barycentre of the target samples it is coupled with.
* ``ot_label_propagation``: the same kind of plan carries source labels onto target samples
  (Redko et al., AISTATS 2019); a classifier is then fitted on the target itself.
* ``cbst``: class-balanced self-training (Zou et al., ECCV 2018): the classifier is refitted on source
  plus a growing, class-balanced share of confidently pseudo-labelled target samples, so
  class-conditional structure of the target shapes the boundary (the idea of JDA/BDA); CORAL first
  is an option (``align``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression

from transferkit.adapt.base import DA_METHODS
from transferkit.adapt.selection import confident_pseudo_labels
from transferkit.errors import ConfigError

C_GRID = (0.01, 0.1, 1.0)


@dataclass
class Affine:
    """``x -> (x - shift) / scale @ matrix``: how target-domain inputs enter the classifier's space."""

    shift: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    matrix: np.ndarray | None = None  # (D, K) or None for the identity

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.shift) / self.scale
        return z if self.matrix is None else z @ self.matrix


@dataclass
class AlignedClassifier:
    """A fitted feature-level method.

    Attributes:
        classifier: fitted on ``source_features`` (and, for self-training, on pseudo-labelled target rows).
        target_map: maps raw target-domain inputs into the classifier's space.
        source_features: the source in that space after alignment, ``(N_s, K)`` (for plots and checks).
        info: what the method wants to report (e.g. pseudo-label counts).
    """

    classifier: LogisticRegression
    target_map: Callable[[np.ndarray], np.ndarray]
    source_features: np.ndarray
    num_classes: int
    info: dict[str, float]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Target-domain inputs ``(N, D)`` in the aligned space ``(N, K)``."""
        return self.target_map(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` for target-domain inputs, columns in class-index order."""
        z = self.transform(x)
        probs = np.zeros((len(z), self.num_classes))
        probs[:, self.classifier.classes_] = self.classifier.predict_proba(z)
        return probs

    def as_linear(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole fitted model as one linear layer on raw target inputs: ``(weight (C, D), bias (C,))``.

        The target map is affine and the classifier is logistic regression, so
        ``softmax(x @ weight.T + bias)`` equals ``predict_proba(x)``; a class the classifier never
        saw gets a bias of -1e4 (probability 0). This is how an adapted model becomes an ordinary
        linear head on the backbone's features.
        """
        mapping = self.target_map
        if not isinstance(mapping, Affine):
            raise TypeError(f"the target map is a {type(mapping).__name__}, not an Affine map")
        coef = self.classifier.coef_
        intercept = self.classifier.intercept_
        if coef.shape[0] == 1:  # binary: scikit-learn keeps one row, the logit of the second class
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]])
        # (x - shift) / scale @ M @ coef.T + b  ==  x @ (A coef.T) + (b - shift/scale @ M @ coef.T)
        matrix = np.eye(len(mapping.shift)) if mapping.matrix is None else mapping.matrix
        a = (matrix / mapping.scale[:, None]) @ coef.T  # (D, C_seen)
        b = intercept - (mapping.shift / mapping.scale) @ matrix @ coef.T
        weight = np.zeros((self.num_classes, a.shape[0]))
        bias = np.full(self.num_classes, -1e4)
        weight[self.classifier.classes_] = a.T
        bias[self.classifier.classes_] = b
        return weight, bias


@dataclass
class AveragedClassifier:
    """Several fitted models whose class probabilities are averaged (one per input transform).

    ``search_features(..., combine="average")`` builds it: each member is the label-free choice on
    one input representation, and averaging them replaces a choice between representations that the
    label-free criterion cannot make reliably (its scores come from different feature spaces).
    """

    members: list[AlignedClassifier]

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    @property
    def source_features(self) -> np.ndarray:
        return np.hstack([m.source_features for m in self.members])

    @property
    def info(self) -> dict[str, float]:
        return {f"{k}_{i}": v for i, m in enumerate(self.members) for k, v in m.info.items()}

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Target-domain inputs in every member's space, side by side ``(N, sum of K)``."""
        return np.hstack([m.transform(x) for m in self.members])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The members' class probabilities ``(N, C)``, averaged."""
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)

    def as_linear(self) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("an average of models on different input transforms is not one linear layer")


def domain_standardiser(x: np.ndarray) -> Affine:
    """Per-feature standardisation with the statistics of ``x`` (constant features keep scale 1)."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return Affine(shift=x.mean(axis=0), scale=np.where(std > 1e-12, std, 1.0))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, C: float, seed: int,
                 sample_weight: np.ndarray | None = None) -> LogisticRegression:
    """The classifier every feature-level method ends with: L2 logistic regression on rows with ``y >= 0``."""
    known = y >= 0
    weight = None if sample_weight is None else sample_weight[known]
    return LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(x[known], y[known], sample_weight=weight)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov ** power`` for a symmetric positive-definite matrix, via its eigendecomposition."""
    values, vectors = linalg.eigh(cov)
    return (vectors * np.maximum(values, 1e-12) ** power) @ vectors.T


def coral_map(source: np.ndarray, target: np.ndarray, *, reg: float = 1.0) -> np.ndarray:
    """CORAL: the source whitened with its own covariance and recoloured with the target's.

    Args:
        source: ``(N_s, D)``, already standardised.
        target: ``(N_t, D)``, already standardised.
        reg: ridge added to both covariances (1 in the paper, on standardised features).

    Returns:
        The aligned source ``(N_s, D)``, centred on the target mean.
    """
    eye = np.eye(source.shape[1])
    cs = np.cov(source, rowvar=False) + reg * eye  # (D, D)
    ct = np.cov(target, rowvar=False) + reg * eye
    return (source - source.mean(axis=0)) @ _sym_power(cs, -0.5) @ _sym_power(ct, 0.5) + target.mean(axis=0)


def pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """The top-``k`` principal directions of ``x`` as columns ``(D, k)``."""
    centred = x - x.mean(axis=0)
    _, _, vt = linalg.svd(centred, full_matrices=False)
    return vt[:k].T


def sinkhorn_plan(source: np.ndarray, target: np.ndarray, *, reg: float, seed: int) -> np.ndarray:
    """Entropic OT plan ``(N_s, N_t)`` between uniform weights, squared Euclidean cost scaled to mean 1."""
    import ot

    cost = ot.dist(source, target)  # (N_s, N_t) squared Euclidean
    cost /= max(float(cost.mean()), 1e-12)
    a, b = np.full(len(source), 1 / len(source)), np.full(len(target), 1 / len(target))
    return ot.sinkhorn(a, b, cost, reg, numItermax=1000, stopThr=1e-7)


def _standardised(source_x: np.ndarray, target_x: np.ndarray) -> tuple[Affine, np.ndarray, np.ndarray]:
    source_map, target_map = domain_standardiser(source_x), domain_standardiser(target_x)
    return target_map, source_map(source_x), target_map(target_x)


def _finish(classifier: LogisticRegression, target_map: Affine, source: np.ndarray, num_classes: int,
            **info: float) -> AlignedClassifier:
    return AlignedClassifier(classifier, target_map, source, num_classes, dict(info))


def _num_classes(source_y: np.ndarray) -> int:
    return int(np.max(source_y)) + 1


@dataclass
class LogisticConfig:
    """Attributes:
    C: inverse L2 strength of the logistic regression.
    """

    C: float = 0.1


@DA_METHODS.register("source_only", level="features", grid={"C": C_GRID}, config=LogisticConfig,
                     description="no adaptation: standardise with source statistics, logistic regression on the source")
def source_only(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
                params: LogisticConfig) -> AlignedClassifier:
    C = params.C
    source_map = domain_standardiser(source_x)  # the target is treated as more source data: no adaptation
    xs = source_map(source_x)
    return _finish(fit_logistic(xs, source_y, C=C, seed=seed), source_map, xs, _num_classes(source_y))


@dataclass
class CoralConfig:
    """Attributes:
    C: inverse L2 strength of the logistic regression.
    reg: ridge added to both covariances.
    """

    C: float = 0.1
    reg: float = 1.0


@DA_METHODS.register("coral", level="features", grid={"C": C_GRID}, config=CoralConfig,
                     description="CORAL (Sun et al. 2016): recolour the source with the target covariance")
def coral(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
          params: CoralConfig) -> AlignedClassifier:
    C, reg = params.C, params.reg
    target_map, xs, xt = _standardised(source_x, target_x)
    aligned = coral_map(xs, xt, reg=reg)
    return _finish(fit_logistic(aligned, source_y, C=C, seed=seed), target_map, aligned, _num_classes(source_y))


@dataclass
class SubspaceAlignmentConfig:
    """Attributes:
    n_components: size of the PCA bases aligned.
    C: inverse L2 strength of the logistic regression.
    """

    n_components: int = 32
    C: float = 1.0


@DA_METHODS.register("subspace_alignment", level="features", grid={"n_components": (16, 32, 64), "C": (0.1, 1.0)},
                     config=SubspaceAlignmentConfig,
                     description="subspace alignment (Fernando et al. 2013): map the source PCA basis onto the "
                                 "target's")
def subspace_alignment(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
                       params: SubspaceAlignmentConfig) -> AlignedClassifier:
    n_components, C = params.n_components, params.C
    target_map, xs, xt = _standardised(source_x, target_x)
    k = max(1, min(n_components, len(xs) - 1, len(xt) - 1, xs.shape[1]))
    ps, pt = pca_basis(xs, k), pca_basis(xt, k)  # (D, k) each
    aligned = (xs - xs.mean(axis=0)) @ ps @ (ps.T @ pt)  # source in the target basis: X_s P_s M, M = P_s^T P_t
    full_map = Affine(target_map.shift, target_map.scale, pt)  # standardised target is centred already
    return _finish(fit_logistic(aligned, source_y, C=C, seed=seed), full_map, aligned, _num_classes(source_y))


OT_GRID = {"reg": (0.05, 0.2), "C": (0.1, 1.0)}


@dataclass
class OTConfig:
    """Attributes:
    reg: entropic regularisation of the transport plan (on costs scaled to mean 1).
    C: inverse L2 strength of the logistic regression.
    """

    reg: float = 0.1
    C: float = 1.0


def _standardised_plan(source_x: np.ndarray, target_x: np.ndarray, *, reg: float, seed: int
                       ) -> tuple[Affine, np.ndarray, np.ndarray, np.ndarray]:
    """Each domain standardised on its own, then the entropic plan ``(N_s, N_t)`` between them."""
    target_map, xs, xt = _standardised(source_x, target_x)
    return target_map, xs, xt, sinkhorn_plan(xs, xt, reg=reg, seed=seed)


@DA_METHODS.register("entropic_ot", level="features", grid=OT_GRID, config=OTConfig,
                     description="entropic optimal transport (Courty et al. 2017): move the source to its "
                                 "barycentric image in the target")
def entropic_ot(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
                params: OTConfig) -> AlignedClassifier:
    reg, C = params.reg, params.C
    target_map, _, xt, plan = _standardised_plan(source_x, target_x, reg=reg, seed=seed)
    moved = (plan @ xt) / np.maximum(plan.sum(axis=1, keepdims=True), 1e-300)
    return _finish(fit_logistic(moved, source_y, C=C, seed=seed), target_map, moved, _num_classes(source_y))


@DA_METHODS.register("ot_label_propagation", level="features", grid=OT_GRID, config=OTConfig,
                     description="OT label propagation (Redko et al. 2019): carry source labels along an entropic "
                                 "plan, fit on the target")
def ot_label_propagation(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
                         params: OTConfig) -> AlignedClassifier:
    reg, C = params.reg, params.C
    target_map, xs, xt, plan = _standardised_plan(source_x, target_x, reg=reg, seed=seed)
    num_classes = _num_classes(source_y)
    # class mass each target sample receives, with source classes reweighted to equal total mass
    known = source_y >= 0
    onehot = np.zeros((len(source_y), num_classes))
    onehot[known, source_y[known]] = 1.0 / np.bincount(source_y[known], minlength=num_classes)[source_y[known]]
    mass = plan.T @ onehot  # (N_t, C)
    labels = mass.argmax(axis=1)
    confidence = mass.max(axis=1) / np.maximum(mass.sum(axis=1), 1e-300)
    if len(np.unique(labels)) < 2:  # a degenerate plan: fall back to the standardised source
        clf = fit_logistic(xs, source_y, C=C, seed=seed)
    else:
        clf = fit_logistic(xt, labels, C=C, seed=seed, sample_weight=confidence)
    return _finish(clf, target_map, xs, num_classes, propagated_confidence=float(confidence.mean()))


STANDARDISE = ("domain", "source")


@dataclass
class CBSTConfig:
    """Attributes:
    C: inverse L2 strength of the logistic regression.
    rounds: self-training rounds (the pseudo-labelled share grows to all of each class).
    align: add CORAL after standardising.
    standardise: ``"domain"`` (each domain with its own statistics) or ``"source"`` (both with the source's).
    target_weight: weight of a pseudo-labelled target sample relative to a source one.
    """

    C: float = 0.1
    rounds: int = 5
    align: bool = False
    standardise: str = "domain"
    target_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.standardise not in STANDARDISE:
            raise ConfigError(f"cbst standardise must be one of {', '.join(STANDARDISE)}, not {self.standardise!r}")


@DA_METHODS.register("cbst", level="features", grid={"C": C_GRID}, config=CBSTConfig,
                     description="class-balanced self-training (Zou et al. 2018) on confident pseudo-labelled target "
                                 "samples, each domain standardised (align=True adds CORAL)")
def cbst(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, seed: int = 0,
         params: CBSTConfig) -> AlignedClassifier:
    """Class-balanced self-training.

    ``align`` adds CORAL after standardising. It is not in the grid: with it there, label-free selection
    (DEV) chose no CORAL on 11 of the 12 Office-Caltech tasks, and on Amazon-400 the doubled grid gave
    DEV's noisy estimate more ways to go wrong (average 79.0 -> 77.5); pass ``params={"align": True}``
    or a custom grid to search it. ``standardise="domain"`` z-scores each domain with its own statistics (first-moment
    alignment); ``"source"`` z-scores both with the source's (no alignment before self-training).
    Joint z-scoring is not offered: like ``"source"`` it applies one affine map to both domains, so it
    leaves their shift as it is.

    ``standardise`` is deliberately not in the grid: importance-weighted criteria (DEV, IWV) cannot
    judge it. A candidate that leaves the domains apart makes the domain classifier separate them, the
    density-ratio weights of the source rows degenerate (none of them looks like the target) and the
    estimate falls back to plain source validation error, which self-training on a far-away target
    does not hurt; so DEV favours exactly the candidates that do not align (on the shifted Gaussians of
    the tests, with ``standardise`` in the grid, it picks a 37%-accurate ``"source"`` candidate over
    ``"domain"`` ones at 70-86%).

    Raises:
        ConfigError: an unknown ``standardise`` mode (when the config is made).
    """
    C, rounds, align, target_weight = params.C, params.rounds, params.align, params.target_weight
    if params.standardise == "domain":
        target_map, xs, xt = _standardised(source_x, target_x)
    else:
        target_map = domain_standardiser(source_x)
        xs, xt = target_map(source_x), target_map(target_x)
    aligned = coral_map(xs, xt) if align else xs
    clf = fit_logistic(aligned, source_y, C=C, seed=seed)
    kept = 0
    for r in range(1, rounds + 1):
        probs = clf.predict_proba(xt)
        # the pseudo-labelled share grows from 1/rounds to all of each predicted class (curriculum)
        indices, label_pos = confident_pseudo_labels(probs, fraction=r / rounds)
        x = np.vstack([aligned, xt[indices]])
        y = np.concatenate([source_y, clf.classes_[label_pos]])
        weight = np.concatenate([np.ones(len(aligned)), np.full(len(indices), target_weight)])
        clf = fit_logistic(x, y, C=C, seed=seed, sample_weight=weight)
        kept = len(indices)
    return _finish(clf, target_map, aligned, _num_classes(source_y), pseudo_labelled=float(kept))
