"""A backbone cut in two: the frozen bottom runs once, the top trains on what the bottom gave.

Fine-tuning only the last layer groups (``partial``, ``lp_ft`` with ``train_last_k``) still runs the frozen
bottom forward on every batch of every epoch. When nothing random happens in the bottom (no augmentation,
no dropout in evaluation mode), its output is the same each time, so it can be computed once and kept: an
epoch then costs only the top's forward and backward passes. On MiniLM with 2 of 6 blocks trained this makes
an epoch about three times cheaper.

A backbone that can be cut implements ``split_top(groups)`` and returns a ``BackboneSplit``: the bottom as a
function of the usual batch, and the top as a ``TopBlocks`` backbone whose items are the bottom's outputs.
The top shares its modules with the backbone, so training it trains the backbone in place;
``features.frozen_outputs`` runs the bottom over samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone, TokenFeatures
from transferkit.errors import DataError

# (hidden states (B, T, D), mask (B, T) bool) -> the top's last hidden states (B, T, D)
TopFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BackboneSplit:
    """A backbone cut before its last layer groups.

    Attributes:
        bottom: the usual batch (``backbone.collate``'s dict) to the states entering the top, with their mask.
        top: a backbone over those states, whose layer groups are the last groups of the cut backbone.
    """

    bottom: Callable[..., TokenFeatures]
    top: TopBlocks


class TopBlocks(Backbone):
    """The top of a cut backbone, as a backbone whose items are the bottom's states of one sample ``(T, D)``.

    ``transform`` takes one sample's states (an array or tensor), ``collate`` pads them and marks the real
    positions, ``forward_features`` runs the top blocks and pools as the whole backbone pools. Training batches
    group states of similar length (``group_by_length``).
    """

    decodes_items = False
    group_by_length = True  # kept states have their real lengths: batches of similar ones pad little

    def __init__(self, source: Backbone, run: TopFn, groups: Sequence[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.modality, self.spec, self.num_features = source.modality, source.spec, source.num_features
        self.sample_rate = source.sample_rate
        self.blocks = nn.ModuleList([module for _, module in groups])
        self._names = [name for name, _ in groups]
        self._run, self._pool = run, source.pool

    def transform(self, item: Any, train: bool = False) -> torch.Tensor:
        states = torch.as_tensor(np.asarray(item, dtype=np.float32))
        if states.ndim != 2 or states.shape[1] != self.num_features:
            raise DataError(f"cached states must be (positions, {self.num_features}), got {tuple(states.shape)}")
        return states

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        longest = max(s.shape[0] for s in samples)
        states = torch.zeros(len(samples), longest, self.num_features)
        mask = torch.zeros(len(samples), longest, dtype=torch.bool)
        for i, s in enumerate(samples):
            states[i, : s.shape[0]], mask[i, : s.shape[0]] = s, True
        return {"states": states, "mask": mask}

    def forward_features(self, states: torch.Tensor, mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self._pool(TokenFeatures(self._run(states, mask), mask))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return list(zip(self._names, self.blocks, strict=True))


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, T)`` bool (True: attend) to the additive key mask ``(B, 1, 1, T)`` attention layers add to scores."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask.bool(), torch.finfo(dtype).min)[:, None, None, :]


def blocks_in_top(groups: Sequence[tuple[str, nn.Module]], train_last_k: int, blocks: Sequence[nn.Module],
                  ) -> int:
    """How many of ``blocks`` (the backbone's repeated layers, in order) lie in the last ``train_last_k`` of
    ``groups``; the groups after the last block (a final norm) go with the top too."""
    top = {id(module) for _, module in groups[len(groups) - train_last_k:]}
    return sum(1 for block in blocks if id(block) in top)
