"""The automatic default of ``adapt``: the feature-level or the deep family, chosen without target labels.

``transferkit adapt`` without ``--method`` first fits the source-only classifier on the frozen features
(a fifth of the source held out) and reads label-free signs of how it carries to the target:

* **target entropy**: the mean entropy of its target predictions, over log(classes) (1: uniform guesses);
* **entropy gap**: that minus the same on the held-out source rows (how much less sure it is on the target);
* **class coverage**: the effective number of predicted classes on the target (the exponential of the
  entropy of the predicted-class histogram), over the number of classes (collapse onto few classes: small);
* **SND**: soft neighbourhood density of the target predictions (Saito et al. 2021), over log(N - 1); it is
  recorded, not decided on: near-uniform predictions look dense too (its known blind spot).

Source-only looks **hopeless** when the target predictions are close to uniform, much less sure than on the
source, or collapsed (``HOPELESS``). Frozen features do not carry across such a shift, so aligning them
(the feature family) cannot help much; training the backbone (the deep family, ``DEEP_DEFAULT``) can, if
the budget holds its estimated cost (a forward pass timed on one batch). Otherwise the feature family's
best label-free method on our benchmarks, ``FEATURE_DEFAULT``, adapts the cached features. Every sign,
threshold, estimate and reason goes to ``adapt.json`` (``"choice"``) and ``choices.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from transferkit.adapt.base import DA_METHODS
from transferkit.adapt.selection import soft_neighbourhood_density

FEATURE_DEFAULT = "cbst"  # best label-free feature-level method on Office-Caltech and Amazon (RESULTS.md)
DEEP_DEFAULT = "mcc"  # best label-free deep method on both digits pairs (RESULTS.md)
# label-free thresholds, fixed before any benchmark: each says "the frozen features do not carry"
HOPELESS = {"target_entropy": 0.6, "entropy_gap": 0.3, "class_coverage": 0.5}
TRAIN_COST = 3.0  # a training step costs about three forward passes
HELD_OUT = 0.2


@dataclass
class AdaptChoice:
    """What the automatic default of ``adapt`` chose and why (``adapt.json``'s ``"choice"``)."""

    method: str
    level: str
    signs: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(HOPELESS))
    hopeless: list[str] = field(default_factory=list)
    deep_estimate_seconds: float | None = None
    budget_seconds: float | None = None
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_only_signs(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *,
                      seed: int = 0) -> dict[str, float]:
    """The label-free signs of how the source-only classifier carries to the target (module docstring)."""
    from sklearn.model_selection import train_test_split

    classes = int(source_y.max()) + 1
    fit_idx, held_idx = train_test_split(np.arange(len(source_y)), test_size=HELD_OUT, random_state=seed,
                                         stratify=source_y if np.bincount(source_y).min() >= 2 else None)
    entry = DA_METHODS.get("source_only")
    model = entry.fn(source_x[fit_idx], source_y[fit_idx], target_x, seed=seed, params=entry.settings())
    target, held = model.predict_proba(target_x), model.predict_proba(source_x[held_idx])
    scale = math.log(max(classes, 2))
    counts = np.bincount(target.argmax(1), minlength=classes) / len(target)
    nonzero = counts[counts > 0]
    signs = {"target_entropy": _entropy(target) / scale, "source_entropy": _entropy(held) / scale,
             "class_coverage": float(math.exp(-(nonzero * np.log(nonzero)).sum())) / classes,
             "largest_class_share": float(counts.max())}
    signs["entropy_gap"] = signs["target_entropy"] - signs["source_entropy"]
    if len(target) > 2:
        signs["snd"] = soft_neighbourhood_density(target) / math.log(len(target) - 1)
    return signs


def hopeless_signs(signs: dict[str, float]) -> list[str]:
    """Which signs say the frozen features do not carry, in words (empty: source-only looks usable)."""
    found = []
    if signs["target_entropy"] >= HOPELESS["target_entropy"]:
        found.append(f"target predictions near uniform (entropy {signs['target_entropy']:.2f} of the maximum, "
                     f">= {HOPELESS['target_entropy']})")
    if signs["entropy_gap"] >= HOPELESS["entropy_gap"]:
        found.append(f"far less sure on the target than on held-out source (entropy {signs['target_entropy']:.2f} "
                     f"vs {signs['source_entropy']:.2f})")
    if signs["class_coverage"] < HOPELESS["class_coverage"]:
        found.append(f"target predictions collapse onto few classes (coverage {signs['class_coverage']:.2f}, "
                     f"largest class {signs['largest_class_share']:.0%})")
    return found


def choose_method(source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray, *, budget: float | None,
                  deep_cost: Callable[[], float] | None, seed: int = 0) -> AdaptChoice:
    """The method the automatic default runs, from the frozen features and labelled source only.

    Args:
        source_x, source_y, target_x: frozen source features, class indices, frozen target features.
        budget: seconds the adaptation may take (None: no backbone training).
        deep_cost: estimates the seconds of ``DEEP_DEFAULT`` on these data (None: the data are features, no
            backbone to train).
    """
    start = time.perf_counter()
    signs = source_only_signs(source_x, source_y, target_x, seed=seed)
    hopeless = hopeless_signs(signs)
    choice = AdaptChoice(method=FEATURE_DEFAULT, level="features", signs=signs, hopeless=hopeless,
                         budget_seconds=budget)
    if not hopeless:
        choice.reasons.append("source-only carries to the target by every label-free sign: align the frozen "
                              f"features ({FEATURE_DEFAULT})")
    elif deep_cost is None:
        choice.reasons.append("source-only looks hopeless (" + "; ".join(hopeless) + "), but the data are "
                              f"features with no backbone to train: {FEATURE_DEFAULT} on them")
    elif budget is None:
        choice.reasons.append("source-only looks hopeless (" + "; ".join(hopeless) + "); training the backbone "
                              f"needs a --budget: {FEATURE_DEFAULT} on the frozen features instead")
    else:
        estimate = deep_cost()
        choice.deep_estimate_seconds = estimate
        if estimate <= budget:
            choice.method, choice.level = DEEP_DEFAULT, DA_METHODS.get(DEEP_DEFAULT).level
            choice.reasons.append("source-only looks hopeless (" + "; ".join(hopeless) + "): frozen features do not "
                                  f"carry, so the backbone is trained ({DEEP_DEFAULT}, about {estimate:.0f}s of the "
                                  f"{budget:.0f}s budget)")
        else:
            choice.reasons.append("source-only looks hopeless (" + "; ".join(hopeless) + "), but training the "
                                  f"backbone would take about {estimate:.0f}s, over the {budget:.0f}s budget: "
                                  f"{FEATURE_DEFAULT} on the frozen features")
    choice.seconds = time.perf_counter() - start
    return choice


def deep_cost_estimate(backbone: Any, source: Any, target: Any, *, epochs: int, batch_size: int) -> float:
    """Seconds a deep method's run should take: a forward pass timed on one batch, times three for training,
    over the source with as many target samples alongside, for ``epochs`` (plus the source pre-training
    epochs where the method has them, ignored: MCC has none)."""
    from transferkit.features import extract_features

    batch = source.subset(list(range(min(len(source), batch_size))))
    extract_features(backbone, batch.subset([0]), use_cache=False, progress=False)  # warm-up
    start = time.perf_counter()
    extract_features(backbone, batch, batch_size=batch_size, use_cache=False, progress=False)
    per_sample = (time.perf_counter() - start) / len(batch)
    return epochs * 2 * len(source) * per_sample * TRAIN_COST + epochs * min(len(target), 2000) * per_sample


def _entropy(probs: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(axis=1).mean())
