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

__all__ = ["AdaptMethod", "AdaptOutcome", "FittedAdapter", "get_adapter", "register_adapter",
           "registered_adapters", "split_domains"]

from transferkit.adapt import feature_methods  # noqa: E402,F401  (registers the feature-level methods)
from transferkit.adapt.estimator import DomainAdaptationClassifier  # noqa: E402

__all__ += ["DomainAdaptationClassifier"]
