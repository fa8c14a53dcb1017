"""Choosing a feature-level method's hyperparameters from its grid without target labels.

Each grid point is fitted once with a validation share of the source hidden (its labels set to
``-1``; the label-free alignment still sees those rows) and scored by a label-free criterion:

* ``dev``: importance-weighted error on the hidden source rows with a control variate (Deep
  Embedded Validation, You et al. 2019); the density ratio is estimated in the classifier's input
  space, between the aligned source and the mapped target.
* ``iwv``: the same without the control variate (Sugiyama et al. 2007).
* ``snd``: soft neighbourhood density of the target predictions (Saito et al. 2021).
* ``source_val``: plain accuracy on the hidden source rows (ignores the shift; for comparison).

``transforms`` widens the search to the input representation: the grid is run once per named input
transform (``transferkit.adapt.transforms``, e.g. raw counts vs their Hellinger embedding) and the best
candidate of each transform is kept. ``combine`` says what happens next:

* ``"average"`` (default): the kept candidates' class probabilities are averaged. DEV's scores on
  different transforms are not on one scale (each comes from its own domain classifier, in its own
  feature space), so picking the top one across transforms is mostly picking noise; averaging needs no
  such comparison. On Office-Caltech SURF, cbst over raw / Hellinger / L2 scored 49.98 picking the
  top DEV score and 51.94 averaging; on Amazon-400, 78.58 and 79.13 (benchmarks/RESULTS.md).
* ``"select"``: the candidate with the best score across all transforms wins.

Either way only source labels and unlabelled target features decide.

The chosen point is refitted on all source labels. When labelled target data are passed (``oracle_eval``),
every candidate's target accuracy is also recorded and the oracle choice refitted, for the report
only: it never influences the label-free choice.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from transferkit.adapt.base import DAMethod
from transferkit.adapt.feature_methods import AlignedClassifier, AveragedClassifier
from transferkit.adapt.selection import density_ratio, importance_weighted_risk, soft_neighbourhood_density
from transferkit.adapt.transforms import TRANSFORMS, Transformed
from transferkit.errors import ConfigError

CRITERIA: tuple[str, ...] = ("dev", "iwv", "snd", "source_val")
COMBINE: tuple[str, ...] = ("average", "select")


@dataclass
class Candidate:
    """One grid point and its scores (higher is better for every score)."""

    params: dict[str, Any]
    scores: dict[str, float]
    transform: str = "identity"


@dataclass
class SearchResult:
    """What the search tried and chose; ``oracle_*`` only when target labels were given for reporting.

    When several transforms were averaged, ``transform`` is ``"average"``, ``params`` is empty and
    ``members`` lists each transform's choice (``{"transform": ..., "params": ...}``).
    """

    method: str
    criterion: str
    params: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)
    oracle_params: dict[str, Any] | None = None
    transform: str = "identity"
    oracle_transform: str | None = None
    members: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchOutcome:
    model: AlignedClassifier | AveragedClassifier
    result: SearchResult
    oracle_model: AlignedClassifier | None = None


def grid_points(grid: Mapping[str, Any], fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid, with the keys in ``fixed`` pinned to the given values."""
    fixed = dict(fixed or {})
    free = {k: list(v) for k, v in grid.items() if k not in fixed}
    keys = sorted(free)
    return [{**dict(zip(keys, values, strict=True)), **fixed} for values in itertools.product(*(free[k] for k in keys))]


def holdout_labels(source_y: np.ndarray, *, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of source rows to hide: ``fraction`` of each class (at least one row of any class with two)."""
    rng = np.random.default_rng(seed)
    hidden = np.zeros(len(source_y), dtype=bool)
    for label in np.unique(source_y):
        members = rng.permutation(np.flatnonzero(source_y == label))
        if len(members) >= 2:
            hidden[members[: max(1, int(round(fraction * len(members))))]] = True
    return hidden


def _score(fitted: AlignedClassifier, source_y: np.ndarray, hidden: np.ndarray, target_x: np.ndarray,
           target_probs: np.ndarray, seed: int) -> dict[str, float]:
    z_source, z_target = fitted.source_features, fitted.transform(target_x)
    probs = np.zeros((int(hidden.sum()), fitted.num_classes))
    probs[:, fitted.classifier.classes_] = fitted.classifier.predict_proba(z_source[hidden])
    errors = (probs.argmax(axis=1) != source_y[hidden]).astype(np.float64)
    weights = density_ratio(z_source, z_target, seed=seed)[hidden]
    return {
        "dev": -importance_weighted_risk(errors, weights, control_variate=True),
        "iwv": -importance_weighted_risk(errors, weights, control_variate=False),
        "snd": soft_neighbourhood_density(target_probs),
        "source_val": 1.0 - float(errors.mean()),
    }


def search_features(method: DAMethod, source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *,
                    criterion: str = "dev", fixed: Mapping[str, Any] | None = None, seed: int = 0,
                    holdout: float = 0.2, oracle_eval: tuple[np.ndarray, np.ndarray] | None = None,
                    transforms: Sequence[str] | None = None, combine: str = "average",
                    progress: Callable[[str], None] | None = None) -> SearchOutcome:
    """Fit ``method`` with hyperparameters chosen from its grid by a label-free ``criterion``.

    Args:
        method: a registered ``"features"`` method.
        source_x: ``(N_s, D)``; source_y: ``(N_s,)`` class indices; target_x: ``(N_t, D)``.
        criterion: one of ``CRITERIA``.
        fixed: hyperparameters the user set; only the rest of the grid is searched.
        holdout: share of each source class hidden for validation.
        oracle_eval: labelled target ``(x, class indices)``, only to report each candidate's target
            accuracy and the oracle choice; it never influences the label-free choice.
        transforms: names of input transforms (``transferkit.adapt.transforms``); the grid runs on
            each and the best candidate of each by ``criterion`` is kept. ``None`` searches the
            features as given. The returned models take raw inputs and apply their transform themselves.
        combine: with several transforms, ``"average"`` the kept candidates' probabilities (default)
            or ``"select"`` the best one by ``criterion`` across transforms (see the module notes).
        progress: called with one line per candidate.

    Raises:
        ConfigError: an unknown criterion, transform or combine rule, a method that is not
            feature-level, or a fixed hyperparameter the method does not take.

    Example:
        >>> outcome = search_features(DA_METHODS.get("coral"), xs, ys, xt, criterion="dev",
        ...                           transforms=["identity", "hellinger"])
        >>> outcome.result.params, outcome.result.transform, outcome.model.predict_proba(xt).shape
    """
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown selection criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if combine not in COMBINE:
        raise ConfigError(f"unknown combine rule {combine!r}; choose one of {', '.join(COMBINE)}")
    if method.level != "features":
        raise ConfigError(f"{method.name} is a {method.level}-level method; search_features takes feature-level ones")
    typed = method.settings(fixed)  # an unknown key or a bad value fails here, with the method's keys
    fixed = {key: getattr(typed, key) for key in fixed or {}}
    names = list(dict.fromkeys(transforms or ["identity"]))
    functions = {name: TRANSFORMS.get(name).fn for name in names}
    points = grid_points(method.grid, fixed)
    hidden = holdout_labels(source_y, fraction=holdout, seed=seed)
    masked = np.where(hidden, -1, source_y)
    if oracle_eval is not None:
        eval_x, eval_y = oracle_eval
        known = np.asarray(eval_y) >= 0
        eval_x, eval_y = np.asarray(eval_x)[known], np.asarray(eval_y)[known]
    labelled_target = oracle_eval is not None and len(eval_y) > 0
    inputs = {name: (fn(source_x), fn(target_x)) for name, fn in functions.items()}
    candidates: list[Candidate] = []
    for name, (xs, xt) in inputs.items():
        x_eval = functions[name](eval_x) if labelled_target else None
        for params in points:
            trial = method.fn(xs, masked, xt, seed=seed, params=method.settings(params))
            target_probs = trial.predict_proba(xt)
            scores = _score(trial, source_y, hidden, xt, target_probs, seed)
            if labelled_target:
                scores["target_accuracy"] = float((trial.predict_proba(x_eval).argmax(axis=1) == eval_y).mean())
            candidates.append(Candidate(params, scores, name))
            if progress is not None:
                shown = f"{method.name} {params}" + (f" on {name}" if len(names) > 1 else "")
                progress(f"{shown}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    refitted: dict[int, AlignedClassifier] = {}  # by candidate: the oracle is often a kept one

    def fitted(candidate: Candidate) -> AlignedClassifier:
        """``candidate`` refitted on all source labels, taking raw inputs."""
        if id(candidate) not in refitted:
            xs, xt = inputs[candidate.transform]
            model = method.fn(xs, source_y, xt, seed=seed, params=method.settings(candidate.params))
            if candidate.transform != "identity":  # identity keeps its affine map, so it folds into one layer
                model = dataclasses.replace(model, target_map=Transformed(candidate.transform, model.target_map))
            refitted[id(candidate)] = model
        return refitted[id(candidate)]

    def rank(c: Candidate) -> tuple[float, float]:
        return c.scores[criterion], c.scores["snd"]  # SND breaks exact ties

    model: AlignedClassifier | AveragedClassifier
    if combine == "average" and len(names) > 1:
        kept = [max((c for c in candidates if c.transform == name), key=rank) for name in names]
        model = AveragedClassifier([fitted(c) for c in kept])
        result = SearchResult(method.name, criterion, {}, candidates, transform="average",
                              members=[{"transform": c.transform, "params": c.params} for c in kept])
    else:
        best = max(candidates, key=rank)
        model = fitted(best)
        result = SearchResult(method.name, criterion, best.params, candidates, transform=best.transform)
    oracle_model = None
    if labelled_target:
        oracle = max(candidates, key=lambda c: c.scores["target_accuracy"])
        result.oracle_params, result.oracle_transform = oracle.params, oracle.transform
        oracle_model = fitted(oracle)
    return SearchOutcome(model, result, oracle_model)
