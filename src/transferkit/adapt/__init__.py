"""Transductive and unsupervised transfer: domain-adaptation methods and label-free selection,
zero-shot classification, clustering and self-training."""

from transferkit.adapt import deep_methods, feature_methods, shot  # noqa: F401  (register the methods)
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
from transferkit.adapt.estimator import DomainAdaptationClassifier
from transferkit.adapt.self_training import SelfTrainingClassifier, self_train
from transferkit.adapt.transforms import get_input_transform, register_input_transform, registered_input_transforms
from transferkit.adapt.zero_shot import ZeroShotClassifier

__all__ = ["AdaptMethod", "AdaptOutcome", "DomainAdaptationClassifier", "FeatureClusterer", "FittedAdapter",
           "SelfTrainingClassifier", "ZeroShotClassifier", "clustering_scores", "get_adapter", "get_input_transform",
           "register_adapter", "register_input_transform", "registered_adapters", "registered_input_transforms",
           "self_train", "split_domains"]
