"""Named input transforms that label-free model selection can choose between, per task.

A transform maps each row on its own (``(N, D) -> (N, D)``), so applying it to the source and to
the target separately is the same as applying it to both together, and a fitted model can apply it
again to new target rows. ``search_features(..., transforms=[...])`` runs the method's grid on every
named transform, keeps each transform's best candidate by the label-free score, and averages them
(or keeps the single best, ``combine="select"``): the input representation is then handled from
source labels and unlabelled target features only, like any other hyperparameter.

* ``identity``: the features as they are.
* ``hellinger``: square root of the L1-normalised row (the Hellinger embedding of a histogram), the
  usual variance-stabilising transform for bag-of-words counts.
* ``l2``: each row scaled to unit Euclidean norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transferkit.errors import DataError
from transferkit.registry import Registry

InputTransform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TransformEntry:
    """One registered input transform: a row-wise ``fn(x (N, D)) -> (N, D)`` with a one-line description."""

    name: str
    fn: InputTransform
    description: str


TRANSFORMS: Registry[TransformEntry] = Registry("input transform", TransformEntry,
                                               hint="see `transferkit list input-transform`")
"""Input transforms by name; ``@TRANSFORMS.register("name", description=...)`` adds one."""


@TRANSFORMS.register("identity", description="the features as they are")
def identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


@TRANSFORMS.register("hellinger", description="square root of the L1-normalised row (for counts/histograms)")
def hellinger(x: np.ndarray) -> np.ndarray:
    """``sqrt(x / sum(x))`` per row.

    Raises:
        DataError: negative values (the transform is for counts and histograms).
    """
    x = np.asarray(x, dtype=np.float64)
    if (x < 0).any():
        raise DataError("the hellinger transform takes non-negative counts or histograms; these features have "
                        f"negative values (min {x.min():.3g})")
    return np.sqrt(x / np.maximum(x.sum(axis=1, keepdims=True), 1e-12))


@TRANSFORMS.register("l2", description="each row scaled to unit Euclidean norm")
def l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Transformed:
    """A target map that first applies a named input transform: ``x -> inner(transform(x))``."""

    transform: str
    inner: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.inner(TRANSFORMS.get(self.transform).fn(x))
