"""Domain adaptation: from labelled source data to unlabelled target data. Feature-level and deep
methods, their losses, and label-free hyperparameter selection. (Zero-shot, clustering and
self-training without a source domain are in ``transferkit.unsupervised``.)"""

from transferkit.adapt import deep_methods, feature_methods, shot  # noqa: F401  (register the methods)
from transferkit.adapt.base import DA_METHODS, AdaptOutcome, DAMethod, FittedDAModel, split_domains
from transferkit.adapt.estimator import DomainAdaptationClassifier
from transferkit.adapt.transforms import TRANSFORMS

__all__ = ["DA_METHODS", "TRANSFORMS", "AdaptOutcome", "DAMethod", "DomainAdaptationClassifier", "FittedDAModel",
           "split_domains"]
