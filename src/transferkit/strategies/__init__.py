"""Registered ways of reusing a pretrained backbone (importing this module registers them)."""

from transferkit.strategies import finetune, head_only, label_words, linear_probe, lora, regularizers
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.strategies.regularizers import REGULARIZERS

__all__ = ["REGULARIZERS", "STRATEGIES", "FitConfig", "FitData", "StrategyOutcome", "finetune", "head_only",
           "label_words", "linear_probe", "lora", "regularizers"]

