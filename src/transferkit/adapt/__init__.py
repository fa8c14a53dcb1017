"""Transductive and source-free transfer: domain-adaptation losses, methods and label-free selection."""

from transferkit.adapt import deep_methods, shot  # noqa: F401  (registers the deep methods)
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
