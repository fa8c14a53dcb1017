"""Clustering in a pretrained feature space: groups in unlabelled data, and how well they match classes.

Features are L2-normalised (pretrained embeddings are compared by angle), reduced by PCA (k-means
in a few tens of dimensions is faster and less noisy than in hundreds), then clustered with k-means.
When the number of clusters is not given it is chosen by the mean silhouette over a range. With
labels, the clusters are scored against them (NMI, ARI, and accuracy under the best one-to-one
matching of clusters to classes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from transferkit.backbones import BackboneSpec, create_backbone
from transferkit.data import Samples, samples_from_arrays
from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.features import extract_features
from transferkit.report.clustering import cluster_map_plot
from transferkit.safety import staged_directory, write_csv, write_json, write_text
from transferkit.unsupervised.zero_shot import normalise_rows

# silhouette is O(N^2): on more samples it is estimated on a random subset of this size
SILHOUETTE_SAMPLE = 2000


def check_k(k: int, n_samples: int) -> None:
    """Raise ConfigError unless ``2 <= k <= n_samples``."""
    if k < 2:
        raise ConfigError(f"the number of clusters must be at least 2, not {k}")
    if k > n_samples:
        raise ConfigError(f"cannot make {k} clusters of {n_samples} samples; choose k <= {n_samples}")


def kmeans(x: np.ndarray, k: int, *, seed: int = 0) -> KMeans:
    """k-means with 10 restarts (``x`` already preprocessed)."""
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)


def choose_k(x: np.ndarray, k_range: Sequence[int], *, seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k of ``k_range`` whose k-means clustering of ``x`` has the highest mean silhouette.

    Returns:
        ``(best_k, {k: silhouette})``; ks that exceed ``len(x) - 1`` are left out (a silhouette
        needs fewer clusters than samples).

    Raises:
        ConfigError: no usable k in the range.
    """
    usable = [k for k in k_range if 2 <= k < len(x)]
    if not usable:
        raise ConfigError(f"no k in {list(k_range)} fits {len(x)} samples (need 2 <= k < {len(x)})")
    scores = {}
    for k in usable:
        labels = kmeans(x, k, seed=seed).labels_
        scores[k] = float(silhouette_score(x, labels, sample_size=min(len(x), SILHOUETTE_SAMPLE), random_state=seed))
    return max(scores, key=scores.__getitem__), scores


def clustering_scores(true_labels: Sequence[Any], cluster_labels: Sequence[Any]) -> dict[str, float]:
    """NMI, ARI and matched accuracy of clusters against true labels.

    Matched accuracy maps each cluster to at most one class by the assignment that maximises
    agreement (Hungarian algorithm), as in the deep-clustering literature; with more clusters than
    classes the extra clusters count as wrong.
    """
    true = np.asarray([str(v) for v in true_labels])
    found = np.asarray(cluster_labels)
    classes, true_ids = np.unique(true, return_inverse=True)
    clusters, found_ids = np.unique(found, return_inverse=True)
    contingency = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(contingency, (found_ids, true_ids), 1)
    rows, cols = linear_sum_assignment(-contingency)
    return {"nmi": float(normalized_mutual_info_score(true, found)),
            "ari": float(adjusted_rand_score(true, found)),
            "matched_accuracy": float(contingency[rows, cols].sum() / len(true))}


def map_2d(x: np.ndarray, *, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``(N, 2)`` coordinates for a picture: t-SNE (``tsne``) or the first two principal components (``pca``).

    Raises:
        ConfigError: an unknown method.
    """
    if method not in ("tsne", "pca"):
        raise ConfigError(f"map method must be 'tsne' or 'pca', not {method!r}")
    if method == "pca" or len(x) < 10:  # t-SNE's perplexity needs more points than a handful
        return PCA(n_components=2, random_state=seed).fit_transform(x) if min(x.shape) >= 2 else np.zeros((len(x), 2))
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                random_state=seed).fit_transform(x)


@dataclass
class Preprocessing:
    """L2 normalisation then PCA, fitted on the clustered data."""

    pca: PCA | None

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = normalise_rows(features)
        return x if self.pca is None else self.pca.transform(x)


class FeatureClusterer(ClusterMixin, BaseEstimator):
    """k-means in a pretrained backbone's feature space, with k chosen by silhouette when not given.

    Args:
        backbone: a registered backbone name (or ``hf:``/``timm:``/local path); None clusters ``X``
            as given, an ``(N, D)`` array of features.
        k: the number of clusters; None chooses it in ``k_min..k_max`` by mean silhouette.
        k_min, k_max: the range searched when ``k`` is None.
        pca_dims: principal components kept before k-means (None: no PCA).
        backbone_options: source options such as ``{"image_size": 128}``.
        batch_size: items per forward pass.
        seed: random seed of PCA and k-means.
        progress: show a progress bar while extracting features.

    Attributes:
        labels_: the cluster of each fitted sample; k_: the number of clusters;
        silhouette_: ``{k: mean silhouette}`` of each k tried (only the chosen one when ``k`` was
        given); classes_: the cluster names (``cluster0``, ...), for use as a self-training start.

    Example:
        >>> FeatureClusterer("efficientnet_lite0").fit(read_dataset("photos/", require_labels=False)).k_
    """

    def __init__(self, backbone: str | None = None, *, k: int | None = None, k_min: int = 2, k_max: int = 10,
                 pca_dims: int | None = 50, backbone_options: dict[str, Any] | None = None, batch_size: int = 32,
                 seed: int = 0, progress: bool = False) -> None:
        self.backbone = backbone
        self.k = k
        self.k_min = k_min
        self.k_max = k_max
        self.pca_dims = pca_dims
        self.backbone_options = backbone_options
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def features(self, X: Any) -> np.ndarray:
        """The ``(N, D)`` features that are clustered: the backbone's, or ``X`` itself without one."""
        if self.backbone is None:
            x = np.asarray(X, dtype=np.float64)
            if x.ndim != 2:
                raise DataError(f"without a backbone, X must be an (N, D) array of features, not shape {x.shape}")
            return x
        backbone = getattr(self, "backbone_", None)
        if backbone is None:
            backbone = create_backbone(BackboneSpec(self.backbone, options=dict(self.backbone_options or {})))
        samples = X if isinstance(X, Samples) else samples_from_arrays(X, None)
        if samples.modality != backbone.modality:
            raise DataError(f"backbone {self.backbone!r} takes {backbone.modality} but the data is {samples.modality}")
        self.backbone_ = backbone
        return extract_features(backbone, samples, batch_size=self.batch_size, progress=self.progress)

    def fit(self, X: Any, y: Any = None) -> FeatureClusterer:
        """Cluster ``X``; ``y`` is ignored.

        Raises:
            ConfigError: ``k`` (or the whole range) does not fit the number of samples.
            DataError: unusable inputs, or a backbone of another modality.
        """
        features = self.features(X)
        if self.k is not None:
            check_k(self.k, len(features))
        elif self.k_min > self.k_max:
            raise ConfigError(f"k_min ({self.k_min}) is larger than k_max ({self.k_max})")
        dims = None if self.pca_dims is None else min(self.pca_dims, features.shape[1], len(features) - 1)
        pca = PCA(n_components=dims, random_state=self.seed).fit(normalise_rows(features)) if dims else None
        self.preprocessing_ = Preprocessing(pca)
        x = self.preprocessing_(features)
        if self.k is None:
            self.k_, self.silhouette_ = choose_k(x, range(self.k_min, self.k_max + 1), seed=self.seed)
        else:
            self.k_ = self.k
            self.silhouette_ = {}
            if self.k < len(x):
                self.silhouette_[self.k] = float(silhouette_score(
                    x, kmeans(x, self.k, seed=self.seed).labels_, sample_size=min(len(x), SILHOUETTE_SAMPLE),
                    random_state=self.seed))
        self.kmeans_ = kmeans(x, self.k_, seed=self.seed)
        self.labels_ = self.kmeans_.labels_
        self.classes_ = np.array([f"cluster{i}" for i in range(self.k_)])
        # squared distances are scaled by their typical size, so probabilities do not depend on the feature scale
        self.distance_scale_ = float(np.median(self.kmeans_.transform(x).min(axis=1) ** 2)) or 1.0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "kmeans_"):
            raise NotFittedError("this FeatureClusterer is not fitted yet; call fit first")

    def predict(self, X: Any) -> np.ndarray:
        """The nearest cluster of each sample (indices into ``classes_``)."""
        self._check_fitted()
        return self.kmeans_.predict(self.preprocessing_(self.features(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(N, k)`` soft assignments: softmax of minus the squared distances to the cluster centres."""
        self._check_fitted()
        distances = self.kmeans_.transform(self.preprocessing_(self.features(X))) ** 2  # (N, k)
        return softmax(-distances / self.distance_scale_, axis=1)


def write_clustering(out: Path, *, origins: Sequence[str], clusters: Sequence[int], summary: dict[str, Any],
                     coords: np.ndarray | None, true_labels: Sequence[str] | None = None,
                     overwrite: bool = False) -> Path:
    """Write ``assignments.csv``, ``assignments.json``, ``summary.json`` and ``map.png`` to ``out`` atomically.

    Raises:
        ArtifactError: ``out`` exists and ``overwrite`` is false.
    """
    rows = [{"item": origin, "cluster": int(cluster), **({"label": true_labels[i]} if true_labels else {})}
            for i, (origin, cluster) in enumerate(zip(origins, clusters, strict=True))]
    with staged_directory(out, overwrite=overwrite) as staging:
        write_csv(staging / "assignments.csv", list(rows[0]), [list(row.values()) for row in rows])
        write_text(staging / "assignments.json", json.dumps(rows, indent=1) + "\n")
        write_json(staging / "summary.json", summary)
        if coords is not None:
            cluster_map_plot(staging / "map.png", coords, clusters, true_labels=true_labels,
                             title=f"{summary.get('backbone') or 'features'}:")
    return out
