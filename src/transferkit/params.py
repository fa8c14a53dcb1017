"""The valid range of every numeric option, in one table that the command line and the Python API share.

The CLI declares each option with ``option_range(name)`` (typer's ``min``/``max``, or a check for an open
bound), so a bad value stops at parsing; the estimators call ``check_params`` in ``fit`` with the same
table, so ``TransferClassifier(batch_size=0).fit(...)`` fails the same way before any work.

Example:
    >>> check_params({"batch_size": 0})
    Traceback (most recent call last):
    transferkit.errors.ConfigError: batch_size must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transferkit.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Values from ``low`` to ``high`` (None: unbounded); an open bound excludes itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{_show(self.low)}, {_show(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_show(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_show(self.high)}"
        return kind

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def check(self, name: str, value: Any) -> None:
        """Raise ConfigError naming ``name`` unless ``value`` is None or in range."""
        if value is not None and not self.contains(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}")


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


_POSITIVE_INT = Range(1, integer=True)

RANGES: dict[str, Range] = {
    # training
    "batch_size": _POSITIVE_INT,
    "epochs": _POSITIVE_INT,
    "lr": Range(0, low_open=True),
    "val_fraction": Range(0, 1, high_open=True),
    "layer_decay": Range(0, 1, low_open=True),
    "train_last_k": _POSITIVE_INT,
    "patience": _POSITIVE_INT,
    "probe_c": Range(0, low_open=True),
    "l2sp_alpha": Range(0),
    "bss_eta": Range(0),
    "unfreeze_every": _POSITIVE_INT,
    "checkpoint_every": Range(0, integer=True),
    "seed": Range(0, 2**32 - 1, integer=True),
    # the backbone's input
    "image_size": Range(8, 4096, integer=True),
    "max_length": Range(2, 65536, integer=True),
    # outputs and other commands
    "top_k": _POSITIVE_INT,
    "shots": _POSITIVE_INT,
    "num_steps": Range(2, integer=True),
    "start_lr": Range(0, low_open=True),
    "end_lr": Range(0, low_open=True),
    "k": Range(2, integer=True),
    "k_min": Range(2, integer=True),
    "k_max": Range(2, integer=True),
    "pca_dims": Range(0, integer=True),
    "self_train": Range(0, integer=True),
    # hyperparameter search
    "trials": _POSITIVE_INT,
    "timeout": Range(0, low_open=True),
}


def option_range(name: str) -> dict[str, Any]:
    """Keyword arguments for ``typer.Option`` that enforce ``RANGES[name]`` at parsing: ``min``/``max`` for
    closed bounds (shown in ``--help``), a callback for an open one."""
    import typer

    bounds = RANGES[name]
    if not (bounds.low_open or bounds.high_open):
        return {key: value for key, value in (("min", bounds.low), ("max", bounds.high)) if value is not None}

    def check(value: Any) -> Any:
        if value is not None and not bounds.contains(value):
            raise typer.BadParameter(f"must be {bounds.describe()}, got {value!r}")
        return value

    return {"callback": check}


def check_params(values: Mapping[str, Any]) -> None:
    """Check every value whose name has a range (others are ignored); ``backbone_options`` is looked into.

    Raises:
        ConfigError: the first value out of range, naming it.
    """
    for name, value in values.items():
        if name in RANGES:
            RANGES[name].check(name, value)
    options = values.get("backbone_options") or {}
    if isinstance(options, Mapping):
        for name in ("image_size", "max_length"):
            if name in options:
                RANGES[name].check(f"backbone_options[{name!r}]", options[name])
