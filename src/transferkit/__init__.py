"""transferkit: reuse pretrained models on your own images, texts and speech."""

from transferkit.backbones import Backbone, BackboneSpec, create_backbone, register_backbone, registered_backbones
from transferkit.errors import TransferkitError
from transferkit.estimator import TransferClassifier, TransferEstimator, TransferRegressor, __version__, load
from transferkit.select import rank_backbones, register_score, registered_scores
from transferkit.strategies import FitConfig, register_strategy, registered_strategies
from transferkit.unsupervised import FeatureClusterer, SelfTrainingClassifier, ZeroShotClassifier

__all__ = ["Backbone", "BackboneSpec", "FeatureClusterer", "FitConfig", "SelfTrainingClassifier", "TransferClassifier",
           "TransferEstimator", "TransferRegressor", "TransferkitError", "ZeroShotClassifier", "__version__",
           "create_backbone", "load", "rank_backbones", "register_backbone", "register_score", "register_strategy",
           "registered_backbones", "registered_scores", "registered_strategies"]
