"""Domain adaptation: from labelled source data to unlabelled target data. Feature-level and deep
methods, their losses, and label-free hyperparameter selection. (Zero-shot, clustering and
self-training without a source domain are in ``transferkit.unsupervised``.)"""

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
from transferkit.adapt.estimator import DomainAdaptationClassifier
from transferkit.adapt.transforms import get_input_transform, register_input_transform, registered_input_transforms

__all__ = ["AdaptMethod", "AdaptOutcome", "DomainAdaptationClassifier", "FittedAdapter", "get_adapter",
           "get_input_transform", "register_adapter", "register_input_transform", "registered_adapters",
           "registered_input_transforms", "split_domains"]
