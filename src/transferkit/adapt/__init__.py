"""Transductive and source-free transfer: domain-adaptation losses, methods and label-free selection."""

from transferkit.adapt.base import (
           AdaptMethod,
           AdaptOutcome,
           FittedAdapter,
           get_adapter,
           register_adapter,
           registered_adapters,
           split_domains,
)
from transferkit.adapt.clustering import FeatureClusterer, clustering_scores
from transferkit.adapt.self_training import SelfTrainingClassifier, self_train
from transferkit.adapt.zero_shot import ZeroShotClassifier

__all__ = ["AdaptMethod", "AdaptOutcome", "FittedAdapter", "get_adapter", "register_adapter",
           "registered_adapters", "split_domains"]
__all__ += ["FeatureClusterer", "SelfTrainingClassifier", "ZeroShotClassifier", "clustering_scores", "self_train"]
