"""Heads that sit on pooled backbone features, and the backbone + head model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone


class LinearHead(nn.Module):
    """Dropout then a linear layer: ``(B, D) -> (B, C)``."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


def set_linear_head(head: LinearHead, weight: np.ndarray, bias: np.ndarray) -> LinearHead:
    """Write a linear model fitted elsewhere (a probe, an adapted classifier) into ``head``: ``(K, D)``, ``(K,)``."""
    with torch.no_grad():
        head.fc.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
        head.fc.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
    return head


class TransferModel(nn.Module):
    """A pretrained backbone with a new head for the target labels.

    Args:
        output: the backbone output the head reads: ``"pooled"`` features ``(B, D) -> (B, C)``, or
            ``"tokens"``, where the head applies to every token ``(B, T, D) -> (B, T, C)``, or
            ``"feature_maps"``, where the head (a detector, ``tasks.detectors``) reads the backbone's maps
            itself and takes the batch as it is (images and, in training, their targets).
    """

    def __init__(self, backbone: Backbone, head: nn.Module, output: str = "pooled") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.output = output
        bind = getattr(head, "bind_backbone", None)
        if callable(bind):  # a head that is the backbone's own output layer (a language model's next-token head)
            bind(backbone)

    def forward(self, **batch: Any) -> Any:
        if self.output == "feature_maps":
            return self.head(**batch)  # training: the detector's loss terms; evaluation: boxes per image
        if self.output == "tokens":
            return self.head(self.backbone.forward_tokens(**batch).features)  # (B, T, D) -> (B, T, C)
        features = self.backbone.forward_features(**batch)  # (B, D)
        return self.head(features)  # (B, C)
