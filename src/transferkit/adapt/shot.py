"""SHOT: source-free adaptation with only the source model and unlabelled target samples.

Liang et al. (ICML 2020), "Do we really need to access the source data?". The source hypothesis (the
head) is frozen and the feature extractor is trained on the target alone, with information
maximisation (confident yet diverse predictions) and cross-entropy on pseudo-labels obtained by
clustering target features around class centroids, refreshed before every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.adapt.base import DA_METHODS, AdaptOutcome
from transferkit.adapt.deep import (
    DeepAdaptConfig,
    DeepAdaptData,
    outcome_of,
    predict,
    pretrain_on_source,
    train_adapted,
)
from transferkit.adapt.losses import information_maximization_loss
from transferkit.data import Samples
from transferkit.heads import TransferModel
from transferkit.train import TrainHooks


def cluster_pseudo_labels(features: np.ndarray, probs: np.ndarray, *, rounds: int = 2) -> np.ndarray:
    """SHOT's self-supervised pseudo-labels: nearest class centroid in feature space (cosine).

    The first centroids are the class-probability-weighted means of the target features; each further
    round recomputes them from the hard labels of the round before. Labels follow the target's own
    cluster structure, which corrects the source model where it is confidently wrong near a cluster.

    Args:
        features: ``(N, D)`` target features.
        probs: ``(N, C)`` the model's class probabilities for them.
        rounds: centroid computations (2 as in SHOT: soft, then hard).

    Returns:
        ``(N,)`` class indices.
    """
    points = np.hstack([features, np.ones((len(features), 1), dtype=features.dtype)])  # SHOT appends a 1
    points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    weights = np.asarray(probs, dtype=np.float64)
    labels = weights.argmax(axis=1)
    for _ in range(max(rounds, 1)):
        centroids = weights.T @ points / (weights.sum(axis=0)[:, None] + 1e-8)  # (C, D + 1)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        labels = (points @ centroids.T).argmax(axis=1)
        weights = np.eye(probs.shape[1])[labels]
    return labels


class ClusterPseudoLabels(TrainHooks):
    """Before each epoch: re-label the target samples the loop trains on, by clustering.

    The loop's loader reads its labels from ``label_ids`` (the list handed to ``make_loader``), so they
    are replaced in place. The labels, the epoch they were made for and the relabelled shares are the
    hook's state: a run resumed mid-epoch goes on with the labels that epoch started with.
    """

    def __init__(self, target: Samples, label_ids: list[int], *, rounds: int) -> None:
        self.target, self.label_ids, self.rounds = target, label_ids, rounds
        self.changed: list[float] = []
        self.epoch = -1

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if epoch == self.epoch:
            return  # resumed inside this epoch: its labels came back with the checkpoint
        assert isinstance(model, TransferModel)
        features, probs = predict(model, self.target, batch_size=256)
        labels = cluster_pseudo_labels(features, probs, rounds=self.rounds)
        self.changed.append(float((labels != probs.argmax(axis=1)).mean()))
        self.label_ids[:] = labels.tolist()
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        return {"labels": torch.tensor(self.label_ids, dtype=torch.long), "epoch": self.epoch,
                "changed": list(self.changed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.label_ids[:] = state["labels"].tolist()
        self.epoch, self.changed = state["epoch"], list(state["changed"])


class InformationMaximization(TrainHooks):
    """Adds ``weight * (entropy - diversity)`` of the batch's predictions."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return self.weight * information_maximization_loss(logits_t=logits)


@dataclass
class SHOTConfig:
    """Attributes:
    beta: weight of the pseudo-label cross-entropy relative to information maximisation.
    rounds: clustering rounds that refine the pseudo-labels before each epoch.
    """

    beta: float = 0.3
    rounds: int = 2


@DA_METHODS.register("shot", level="deep", source_free=True, grid={"beta": (0.1, 0.3, 0.5)}, config=SHOTConfig,
                     description="SHOT (Liang et al., ICML 2020), source-free: frozen source head, information "
                     "maximisation + pseudo-labels from clustering target features")
def shot(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: SHOTConfig) -> AdaptOutcome:
    """``config.source_epochs`` of source training first (0: the model is already the source model);
    from then on only the model and the unlabelled target samples are used.

    The loss is ``CE(pseudo-labels) + IM / beta``, SHOT's ``IM + beta * CE`` scaled by ``1 / beta``
    (the same minimiser; AdamW's steps barely depend on the scale).
    """
    beta, rounds = params.beta, params.rounds
    source_history = pretrain_on_source(model, data, config)
    pseudo = [0] * len(data.target)
    relabel = ClusterPseudoLabels(data.target, pseudo, rounds=rounds)
    result = train_adapted(model, data, config, hooks=(relabel, InformationMaximization(1.0 / beta)),
                           train=(data.target, pseudo), train_head=False)
    return outcome_of(result, source_history=source_history, relabelled_share=relabel.changed)
