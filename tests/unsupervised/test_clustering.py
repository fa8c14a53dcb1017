"""Clustering in a feature space: recovering blobs, choosing k, scoring, the map and the output folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import support
from transferkit.errors import ArtifactError, ConfigError, DataError, NotFittedError
from transferkit.safety import MARKER
from transferkit.unsupervised.clustering import FeatureClusterer, clustering_scores, map_2d, write_clustering


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=240, centers=4, n_features=16, cluster_std=1.0, center_box=(-10, 10), random_state=3)
    return x, y


def test_recovers_well_separated_blobs_and_picks_k(blobs) -> None:
    x, y = blobs
    clusterer = FeatureClusterer(None, k_min=2, k_max=8).fit(x)
    assert clusterer.k_ == 4
    assert set(clusterer.silhouette_) == set(range(2, 9))
    scores = clustering_scores(y, clusterer.labels_)
    assert scores["nmi"] > 0.9 and scores["ari"] > 0.9 and scores["matched_accuracy"] > 0.95
    probabilities = clusterer.predict_proba(x)
    assert probabilities.shape == (240, 4) and (probabilities.argmax(axis=1) == clusterer.predict(x)).all()


def test_scores_see_through_renamed_clusters() -> None:
    truth = ["a", "a", "b", "b", "c", "c"]
    assert clustering_scores(truth, [2, 2, 0, 0, 1, 1]) == {"nmi": 1.0, "ari": 1.0, "matched_accuracy": 1.0}
    assert clustering_scores(truth, [0, 0, 0, 0, 1, 1])["matched_accuracy"] == pytest.approx(4 / 6)


def test_user_errors(blobs) -> None:
    x, _ = blobs
    with pytest.raises(ConfigError, match="cannot make 500 clusters of 240"):
        FeatureClusterer(None, k=500).fit(x)
    with pytest.raises(ConfigError, match="at least 2"):
        FeatureClusterer(None, k=1).fit(x)
    with pytest.raises(ConfigError, match="k_min"):
        FeatureClusterer(None, k_min=5, k_max=3).fit(x)
    with pytest.raises(DataError, match="array of features"):
        FeatureClusterer(None, k=2).fit(np.zeros(10))
    with pytest.raises(NotFittedError):
        FeatureClusterer(None).predict(x)


def test_backbone_features_of_texts(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(10)
    clusterer = FeatureClusterer(f"hf:{tiny_bert_dir}", k=2).fit(texts)
    assert clusterer.labels_.shape == (20,) and clusterer.backbone_.modality == "text"
    assert clusterer.predict(texts).tolist() == clusterer.labels_.tolist()


def test_output_folder_is_complete_and_written_atomically(blobs, tmp_path: Path) -> None:
    x, y = blobs
    labels = [str(v) for v in y]
    clusterer = FeatureClusterer(None, k=4).fit(x)
    coords = map_2d(x, method="pca")
    out = tmp_path / "clusters"
    summary = {"k": 4, "scores": clustering_scores(labels, clusterer.labels_)}
    write_clustering(out, origins=[f"X[{i}]" for i in range(len(x))], clusters=clusterer.labels_.tolist(),
                     summary=summary, coords=coords, true_labels=labels)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "assignments.csv", "assignments.json", "map.png",
                                                     "summary.json"]
    with (out / "assignments.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 240 and rows[0].keys() == {"item", "cluster", "label"}
    assert json.loads((out / "summary.json").read_text())["k"] == 4
    assert (out / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ArtifactError, match="already exists"):
        write_clustering(out, origins=["a"], clusters=[0], summary={}, coords=None)
    with pytest.raises(IndexError):  # the map fails after the tables were written: no partial folder is left
        write_clustering(tmp_path / "bad", origins=["a", "b"], clusters=[0, 1], summary={}, coords=np.zeros((1, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters"]


def test_tsne_map_has_two_columns(blobs) -> None:
    x, _ = blobs
    assert map_2d(x[:60], method="tsne").shape == (60, 2)
    with pytest.raises(ConfigError, match="tsne"):
        map_2d(x, method="umap")
