"""Choosing by itself: hyperparameter search (``tune``), the automatic default of ``fit`` (``choose``) and of
``adapt`` (``adapt``), each deciding on validation data (labelled for fit, label-free for adapt)."""

from transferkit.auto.budget import parse_budget
from transferkit.auto.tune import PruningHook, TuneConfig, TuneResult, tune

__all__ = ["PruningHook", "TuneConfig", "TuneResult", "parse_budget", "tune"]
