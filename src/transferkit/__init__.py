"""transferkit: reuse pretrained models on your own images, texts and speech."""

from transferkit.backbones import BACKBONES, Backbone, BackboneSpec, create_backbone
from transferkit.errors import TransferkitError
from transferkit.estimator import TransferClassifier, TransferEstimator, TransferRegressor, __version__, load
from transferkit.registry import Registry, registries
from transferkit.select import SCORES, rank_backbones
from transferkit.strategies import STRATEGIES, FitConfig
from transferkit.unsupervised import FeatureClusterer, SelfTrainingClassifier, ZeroShotClassifier

__all__ = ["BACKBONES", "SCORES", "STRATEGIES", "Backbone", "BackboneSpec", "FeatureClusterer", "FitConfig", "Registry",
           "SelfTrainingClassifier", "TransferClassifier", "TransferEstimator", "TransferRegressor", "TransferkitError",
           "ZeroShotClassifier", "__version__", "create_backbone", "load", "rank_backbones", "registries"]
