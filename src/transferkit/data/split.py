"""Train/validation splits: stratified for class labels (never taking a class away from training), random
for targets that have no classes (several labels per sample, numbers)."""

import warnings
from collections.abc import Sequence

import numpy as np

from transferkit.data.samples import Samples
from transferkit.errors import ConfigError


def stratified_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out about ``fraction`` of each class for validation.

    Each class gives ``round(fraction * n)`` samples, at least one and at most ``n - 1``, so every
    class is both validated and trained on (with many tiny classes the validation share can
    therefore exceed ``fraction``). A class with a single sample cannot be both: it only trains,
    with a warning naming it, and the other classes are still validated. When ``fraction`` is 0 the
    validation set is empty and everything trains.

    Args:
        labels: one class name per sample.
        fraction: share of each class to hold out, in ``[0, 1)``.
        seed: seeds the shuffle, so the same seed gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 index arrays that partition ``range(len(labels))``.

    Raises:
        ConfigError: ``fraction`` outside ``[0, 1)``.

    Example:
        >>> train_idx, val_idx = stratified_split(["a"] * 10 + ["b"] * 10, 0.2, seed=0)
        >>> len(val_idx)
        4
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"the validation fraction must be in [0, 1), not {fraction!r}")
    labels_arr = np.asarray(list(labels), dtype=object)
    everything = np.arange(len(labels_arr), dtype=np.int64)
    classes, counts = np.unique(labels_arr.astype(str), return_counts=True)
    if fraction == 0 or len(labels_arr) == 0:
        return everything, np.empty(0, dtype=np.int64)
    single = classes[counts < 2].tolist()
    if single:
        warnings.warn(f"{len(single)} class(es) with a single example ({', '.join(map(repr, single[:10]))}"
                      f"{', ...' if len(single) > 10 else ''}) only train and are not validated", stacklevel=2)
    if len(single) == len(classes):
        return everything, np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls, n in zip(classes, counts, strict=True):
        if n < 2:
            continue
        members = everything[labels_arr.astype(str) == cls]
        n_val = min(max(1, round(fraction * n)), n - 1)
        val_parts.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val_parts))
    train_idx = np.setdiff1d(everything, val_idx)
    return train_idx, val_idx


def random_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(fraction * n)`` random samples (at least one, at most ``n - 1``) for validation.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 index arrays; the validation set is empty when
        ``fraction`` is 0 or there are fewer than two samples.

    Raises:
        ConfigError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"the validation fraction must be in [0, 1), not {fraction!r}")
    everything = np.arange(n, dtype=np.int64)
    if fraction == 0 or n < 2:
        return everything, np.empty(0, dtype=np.int64)
    n_val = min(max(1, round(fraction * n)), n - 1)
    val_idx = np.sort(np.random.default_rng(seed).permutation(n)[:n_val]).astype(np.int64)
    return np.setdiff1d(everything, val_idx), val_idx


def split_samples(samples: Samples, fraction: float, seed: int) -> tuple[Samples, Samples]:
    """``stratified_split`` applied to labelled ``Samples``: ``(train, val)``.

    Raises:
        ConfigError: ``fraction`` outside ``[0, 1)``, or unlabelled samples.
    """
    if samples.labels is None:
        raise ConfigError("cannot split unlabelled samples by class")
    train_idx, val_idx = stratified_split(samples.labels, fraction, seed)
    return samples.subset(train_idx), samples.subset(val_idx)
