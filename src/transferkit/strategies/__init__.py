"""Registered ways of reusing a pretrained backbone (importing this module registers them)."""

from transferkit.strategies import finetune, linear_probe, lora, regularizers
from transferkit.strategies.base import (
    FitConfig,
    FitData,
    StrategyOutcome,
    get_strategy,
    register_strategy,
    registered_strategies,
)

__all__ = ["FitConfig", "FitData", "StrategyOutcome", "finetune", "get_strategy", "linear_probe", "lora",
           "regularizers", "register_strategy", "registered_strategies"]
