"""``DomainAdaptationClassifier``: feature-level domain adaptation on arrays, the scikit-learn way.

Source and target rows come in one array marked by skada's ``sample_domain`` convention (source
> 0, target < 0) and target labels are unknown (``-1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from transferkit.adapt.base import DA_METHODS, UNKNOWN_LABEL, split_domains
from transferkit.adapt.search import SearchResult, search_features
from transferkit.errors import ConfigError, DataError, NotFittedError


class DomainAdaptationClassifier(ClassifierMixin, BaseEstimator):
    """Adapt a classifier from labelled source rows to unlabelled target rows of the same array.

    Hyperparameters not given are chosen from the method's grid without target labels
    (``selection``, see ``transferkit.adapt.search``). Target labels in ``y`` (anything but
    ``-1`` on a target row) are never used to fit or select: they only fill ``search_.oracle_params``
    and each candidate's ``target_accuracy``, so the gap to the oracle choice is visible.

    Args:
        method: a registered feature-level method (``transferkit list adaptation-method``), or ``"auto"``: the
            automatic default reads label-free signs of the source-only fit and picks the feature-level method
            (``transferkit.auto.adapt``; arrays have no backbone to train), recorded in ``choice_``.
        selection: label-free criterion: ``dev``, ``iwv``, ``snd`` or ``source_val``.
        holdout: share of each source class hidden while selecting.
        transforms: named input transforms (``transferkit.adapt.transforms``, e.g. ``("identity",
            "hellinger")`` for counts); each gets its own label-free choice from the grid. ``None`` uses
            the features as given.
        combine: with several transforms, ``"average"`` the choices' probabilities (default; see
            ``search_.members``) or ``"select"`` the best one by the criterion (``search_.transform``).
        seed: random seed.
        method_params: the method's hyperparameters to fix, by its config's field names (e.g.
            ``{"C": 0.1}``); the rest of its grid is searched. ``DA_METHODS.get(method).config`` lists them.

    Example:
        >>> clf = DomainAdaptationClassifier("coral", method_params={"reg": 0.5}).fit(X, y, sample_domain=domains)
        >>> clf.predict(X[domains < 0])
    """

    def __init__(self, method: str = "coral", *, selection: str = "dev", holdout: float = 0.2,
                 transforms: tuple[str, ...] | None = None, combine: str = "average", seed: int = 0,
                 method_params: dict[str, Any] | None = None) -> None:
        self.method = method
        self.selection = selection
        self.holdout = holdout
        self.transforms = transforms
        self.combine = combine
        self.seed = seed
        self.method_params = method_params

    def fit(self, X: np.ndarray, y: np.ndarray, sample_domain: np.ndarray | None = None) -> DomainAdaptationClassifier:
        """Fit on source rows (``sample_domain > 0``) and unlabelled target rows (``< 0``).

        Raises:
            DataError: no ``sample_domain``, lengths that differ, no source or no target rows,
                missing source labels, a single source class, non-numeric or non-finite features, or
                labelled target rows of a class the source lacks, or a transform the features do not
                suit (``hellinger`` on negative values).
            ConfigError: an unknown method, criterion, transform, combine rule or hyperparameter (the message
                lists the method's), or a hyperparameter value of the wrong type.
        """
        if sample_domain is None:
            raise DataError("fit needs sample_domain (source > 0, target < 0) to tell the domains apart")
        X = _as_features(X)
        y = np.asarray(y)
        source_x, source_y, target_x, target_y = split_domains(X, y, sample_domain)
        name = self.method
        if name == "auto":
            from transferkit.auto.adapt import choose_method

            if self.method_params:
                raise ConfigError("method_params need a named method; 'auto' chooses its own")
            self.choice_ = choose_method(source_x, np.searchsorted(np.unique(source_y), source_y), target_x,
                                         budget=None, deep_cost=None, seed=self.seed)
            name = self.choice_.method
        method = DA_METHODS.get(name)
        if method.level != "features":
            raise ConfigError(f"{name} is a deep method; DomainAdaptationClassifier takes feature-level ones "
                              "(use transferkit.adapt.adapt for deep methods)")
        self.classes_ = np.unique(source_y)
        if len(self.classes_) < 2:
            raise DataError(f"the source has a single class {self.classes_[0]!r}; need at least two")
        oracle_eval = None
        known = target_y != UNKNOWN_LABEL
        if known.any():
            absent = sorted(set(target_y[known].tolist()) - set(self.classes_.tolist()))
            if absent:
                raise DataError(f"target labels {absent} are classes the source does not have")
            oracle_eval = (target_x[known], np.searchsorted(self.classes_, target_y[known]))
        outcome = search_features(method, source_x, np.searchsorted(self.classes_, source_y), target_x,
                                  criterion=self.selection, fixed=self.method_params, seed=self.seed,
                                  holdout=self.holdout, oracle_eval=oracle_eval, transforms=self.transforms,
                                  combine=self.combine)
        self.model_ = outcome.model
        self.search_: SearchResult = outcome.result
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray, sample_domain: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(N, C)`` for target-domain rows (columns follow ``classes_``).

        Raises:
            NotFittedError: before ``fit``.
            DataError: another number of features, or rows marked as source.
        """
        if not hasattr(self, "model_"):
            raise NotFittedError("DomainAdaptationClassifier is not fitted; call fit first")
        X = _as_features(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}")
        if sample_domain is not None and (np.asarray(sample_domain) > 0).any():
            raise DataError("predict takes target-domain rows (sample_domain < 0); the source was only for fitting")
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray, sample_domain: np.ndarray | None = None) -> np.ndarray:
        """Predicted classes of target-domain rows."""
        probs = self.predict_proba(X, sample_domain)
        return self.classes_[probs.argmax(axis=1)]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Target-domain rows in the aligned space the classifier works in."""
        if not hasattr(self, "model_"):
            raise NotFittedError("DomainAdaptationClassifier is not fitted; call fit first")
        return self.model_.transform(_as_features(X))


def _as_features(X: Any) -> np.ndarray:
    try:
        x = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"features must be numeric: {exc}") from None
    if x.ndim != 2:
        raise DataError(f"features must be a 2-D array (samples, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values")
    return x
