"""The domain-adaptation contract: one registry for every transductive / source-free method.

Data follow skada's convention: each sample carries a ``sample_domain`` (source > 0, target < 0)
and target labels are unknown (-1) during adaptation. A method is registered by name with the level
it works at:

* ``"features"``: works on arrays (cached backbone features or any user array). The registered
  callable is ``fn(source_x, source_y, target_x, *, seed, params) -> FittedDAModel``; it returns an
  object with ``predict_proba(x) -> (N, C)`` for target-domain inputs (and ``transform(x)`` when it
  maps features into a shared space).
* ``"deep"``: trains a ``TransferModel`` on the shared training loop with unlabelled target batches;
  the registered callable is ``fn(model, data, config, params) -> AdaptOutcome``.

``params`` is an instance of the method's own config dataclass (``DAMethod.config``), built and checked
by ``DAMethod.settings`` from a dict (Python), ``--param KEY=VALUE`` text (the CLI) or a grid point.
``grid`` is the method's own hyperparameter grid, searched by label-free model selection
(``transferkit.adapt.selection``); ``source_free`` marks methods that never see source data while
adapting (they start from a model trained on the source).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from transferkit.config import make_config, settings_listing
from transferkit.errors import DataError
from transferkit.registry import Registry

Level = Literal["features", "deep"]
UNKNOWN_LABEL = -1


class FittedDAModel(Protocol):
    """What a feature-level method returns: a classifier for target-domain inputs."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:  # (N, D) -> (N, C)
        ...


@dataclass
class AdaptOutcome:
    """What a deep method reports: per-epoch history and free-form extras (e.g. pseudo-label rates)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DAMethod:
    """One registered domain-adaptation method.

    Attributes:
        name: what ``transferkit adapt --method`` calls it.
        fn: the method (its signature depends on ``level``, see the module docstring).
        level: ``"features"`` (arrays) or ``"deep"`` (trains a model on the loop).
        description: one line for the CLI's listing.
        config: the method's hyperparameters as a dataclass (every field has a default).
        grid: the method's own hyperparameter grid (over ``config``'s fields), searched by label-free
            model selection.
        source_free: the method never sees source data while adapting.
    """

    name: str
    fn: Callable[..., Any]
    level: Level
    description: str
    config: type
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    source_free: bool = False

    def settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """The method's config with ``values`` set (text is parsed; see ``transferkit.config.make_config``).

        Raises:
            ConfigError: an unknown key (the message lists the method's keys) or a value of the wrong type.
        """
        return make_config(self.config, values, what=f"adaptation method {self.name!r}")

    def __post_init__(self) -> None:
        if self.level not in ("features", "deep"):
            raise ValueError(f"adaptation method {self.name!r}: level must be 'features' or 'deep', "
                             f"not {self.level!r}")

    def listing(self) -> tuple[str, ...]:
        """Level, source-free or not, and the search grid, for ``transferkit list adaptation-method``."""
        grid = " ".join(f"{key}={','.join(map(str, values))}" for key, values in self.grid.items())
        return (self.level, "source-free" if self.source_free else "", f"grid: {grid}" if grid else "",
                settings_listing(self.config))


DA_METHODS: Registry[DAMethod] = Registry("adaptation method", DAMethod,
                                         hint="see `transferkit list adaptation-method`")
"""Domain-adaptation methods by name; ``@DA_METHODS.register("name", level=..., description=...)`` adds one."""


def split_domains(x: np.ndarray, y: np.ndarray, sample_domain: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split skada-style mixed arrays into ``(source_x, source_y, target_x, target_y)``.

    ``target_y`` keeps whatever labels were given for target rows (``-1`` when unknown); callers
    must not use it for adaptation, only for reporting.

    Raises:
        DataError: lengths differ, no source or no target rows, or source labels are missing.
    """
    x, y, sample_domain = np.asarray(x), np.asarray(y), np.asarray(sample_domain)
    if not (len(x) == len(y) == len(sample_domain)):
        raise DataError(f"x, y and sample_domain differ in length ({len(x)}, {len(y)}, {len(sample_domain)})")
    source, target = sample_domain > 0, sample_domain < 0
    if not source.any():
        raise DataError("no source samples (sample_domain > 0)")
    if not target.any():
        raise DataError("the target domain has no samples (sample_domain < 0)")
    if (y[source] == UNKNOWN_LABEL).any():
        raise DataError(f"{int((y[source] == UNKNOWN_LABEL).sum())} source samples have no label (-1)")
    return x[source], y[source], x[target], y[target]
