"""Transfer without labelled examples of the task: zero-shot classification by similarity to the class
names, clustering in a pretrained feature space, and self-training on confident pseudo-labels."""

from transferkit.unsupervised.clustering import FeatureClusterer, clustering_scores
from transferkit.unsupervised.self_training import SelfTrainingClassifier, self_train
from transferkit.unsupervised.zero_shot import ZeroShotClassifier

__all__ = ["FeatureClusterer", "SelfTrainingClassifier", "ZeroShotClassifier", "clustering_scores", "self_train"]
