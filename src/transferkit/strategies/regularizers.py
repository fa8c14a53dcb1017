"""Fine-tuning regularisers, usable with any fine-tuning strategy (``FitConfig.regularizers``).

Each is a ``TrainHooks`` built by a registered factory ``(model, settings) -> TrainHooks`` from an
instance of its config class (``L2SPConfig``, ``BSSConfig``, ...); those on the pooled features are
one ``HeadInputPenalty`` around a pure loss function:

* ``l2sp``: L2-SP (Li et al., ICML 2018), ``alpha/2 * ||w - w0||^2`` over the backbone's weights,
  pulling them towards the pretrained starting point, plus ``beta/2 * ||w_head||^2``.
* ``bss``: Batch Spectral Shrinkage (Chen et al., NeurIPS 2019), ``eta * sum(sigma_min_k^2)`` of
  the batch of pooled features entering the head, which suppresses the feature directions that
  transfer badly.
* ``supcon``: supervised contrastive loss (Khosla et al., NeurIPS 2020) on the L2-normalised
  features entering the head: samples of one class pulled together, other classes pushed apart.
  It is SetFit's idea (contrastive tuning of the sentence encoder) done on whole batches rather
  than on generated pairs, so it costs no more than fine-tuning; see the ``contrastive`` strategy.
* ``cosine_pairs``: SetFit's own pair loss (sentence-transformers' ``CosineSimilarityLoss``) on every
  pair of the batch: the squared gap between two samples' cosine similarity and 1 (same class) or 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from transferkit.config import make_config, settings_listing
from transferkit.heads import TransferModel
from transferkit.registry import Registry
from transferkit.strategies.base import FitConfig
from transferkit.train import TrainHooks

# (model, the regulariser's config) -> its hooks
RegularizerFactory = Callable[[TransferModel, Any], TrainHooks]
# the regularisers that the ``contrastive`` strategy can tune the backbone with (``ContrastiveConfig.loss``)
CONTRASTIVE_LOSSES = ("supcon", "cosine_pairs")


@dataclass(frozen=True)
class RegularizerEntry:
    """One registered fine-tuning regulariser.

    Attributes:
        name: what ``--regularizer`` and ``FitConfig.regularizers`` call it.
        factory: builds its training hooks, ``factory(model, settings) -> TrainHooks``.
        description: one line for ``transferkit list regularizer``.
        config: the regulariser's config dataclass (every field has a default); ``settings`` builds it.
    """

    name: str
    factory: RegularizerFactory
    description: str
    config: type

    def settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """The regulariser's config with ``values`` set (see ``transferkit.config.make_config``)."""
        return make_config(self.config, values, what=f"regulariser {self.name!r}")

    def listing(self) -> tuple[str, ...]:
        """The regulariser's settings (``--param NAME.KEY=VALUE``), for ``transferkit list regularizer``."""
        return (settings_listing(self.config),)


REGULARIZERS: Registry[RegularizerEntry] = Registry("regularizer", RegularizerEntry,
                                                   hint="see `transferkit list regularizer`")
"""Regularisers by name; ``@REGULARIZERS.register("name", description=...)`` adds one."""


def build_regularizers(model: TransferModel, config: FitConfig) -> list[TrainHooks]:
    """The hooks of every regulariser in ``config.regularizers``, each built from its settings.

    Raises:
        ConfigError: an unknown name (lists the registered ones), or settings its config refuses.
    """
    hooks = []
    for name, values in config.regularizers.items():
        entry = REGULARIZERS.get(name)
        hooks.append(entry.factory(model, entry.settings(values)))
    return hooks


class L2SP(TrainHooks):
    """Pull backbone weights towards the pretrained ones; plain L2 on the head."""

    def __init__(self, model: TransferModel, alpha: float, beta: float) -> None:
        self.alpha, self.beta = alpha, beta
        self.anchors = [(p, p.detach().clone()) for p in model.backbone.parameters() if p.is_floating_point()]
        self.head_params = [p for p in model.head.parameters() if p.ndim > 1]

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        pull = sum(((p - p0) ** 2).sum() for p, p0 in self.anchors if p.requires_grad)
        head = sum((p**2).sum() for p in self.head_params)
        return 0.5 * self.alpha * pull + 0.5 * self.beta * head  # type: ignore[return-value]


class HeadInputPenalty(TrainHooks):
    """A weighted penalty on the pooled features of each training batch (the head's input).

    Args:
        penalty: a pure loss ``penalty(features (B, D), labels (B,)) -> scalar``.
        weight: its factor in the training loss.
    """

    def __init__(self, model: TransferModel, penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 weight: float) -> None:
        self.penalty, self.weight = penalty, weight
        self.features: torch.Tensor | None = None
        # first in line, so that it sees the features as the backbone made them even when another hook
        # (the contrastive strategy's detaching one) changes what the head receives
        self.handle = model.head.register_forward_pre_hook(self._capture, prepend=True)

    def _capture(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.features = args[0]  # (B, D)

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        # only while the backbone trains: under a frozen or no-grad pass there is nothing to shape
        if self.features is None or not self.features.requires_grad:
            return None
        return self.weight * self.penalty(self.features.float(), labels)

    def on_train_end(self, model: nn.Module) -> None:
        self.handle.remove()
        self.features = None


def spectral_shrinkage_loss(features: torch.Tensor, labels: torch.Tensor, *, k: int) -> torch.Tensor:
    """BSS: the sum of the ``k`` smallest squared singular values of the batch's features ``(B, D)``.

    ``labels`` are unused (the penalty is label-free); the argument keeps one signature for every penalty.
    """
    del labels
    singular = torch.linalg.svdvals(features)  # (min(B, D),), descending
    return (singular[-k:] ** 2).sum()


def supervised_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """SupCon: mean over anchors of ``-mean_p log softmax_a(sim(anchor, a) / t)[p]`` over its positives p.

    Args:
        features: ``(B, D)`` batch features (normalised here).
        labels: ``(B,)`` class indices.
        temperature: softmax temperature over cosine similarities.

    Returns:
        A scalar; 0 when no sample in the batch shares its class with another.
    """
    z = nn.functional.normalize(features, dim=-1)
    similarity = z @ z.T / temperature  # (B, B)
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = similarity.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask  # (B, B)
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not anchors.any():
        return similarity.new_zeros(())
    pulled = log_prob.masked_fill(~positives, 0.0).sum(dim=1)[anchors] / counts[anchors]
    return -pulled.mean()


def cosine_pair_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's pairs of ``(cos(a, b) - [same class])**2``, SetFit's pair objective.

    Args:
        features: ``(B, D)`` batch features.
        labels: ``(B,)`` class indices.

    Returns:
        A scalar; 0 for a batch of one sample.
    """
    z = nn.functional.normalize(features, dim=-1)
    target = (labels[:, None] == labels[None, :]).to(z.dtype)  # (B, B)
    pairs = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    if not pairs.any():
        return z.new_zeros(())
    return ((z @ z.T - target) ** 2)[pairs].mean()


@dataclass
class L2SPConfig:
    """Attributes:
    alpha: pull of the backbone weights towards their pretrained values.
    beta: plain L2 on the new head.
    """

    alpha: float = 0.01
    beta: float = 0.01


@dataclass
class BSSConfig:
    """Attributes:
    eta: weight of batch spectral shrinkage.
    k: how many of the smallest singular values of the batch features it shrinks.
    """

    eta: float = 0.001
    k: int = 1


@dataclass
class SupConConfig:
    """Attributes:
    weight: weight of the supervised contrastive term.
    temperature: its softmax temperature.
    """

    weight: float = 1.0
    temperature: float = 0.1


@dataclass
class CosinePairsConfig:
    """Attributes:
    weight: weight of SetFit's pair loss.
    """

    weight: float = 1.0


@REGULARIZERS.register("l2sp", config=L2SPConfig, description="L2-SP: pull the backbone weights towards the "
                       "pretrained ones, plain L2 on the head (Li et al. 2018)")
def l2sp(model: TransferModel, settings: L2SPConfig) -> TrainHooks:
    return L2SP(model, settings.alpha, settings.beta)


@REGULARIZERS.register("bss", config=BSSConfig, description="batch spectral shrinkage: shrink the smallest "
                       "singular values of the pooled features (Chen et al. 2019)")
def bss(model: TransferModel, settings: BSSConfig) -> TrainHooks:
    return HeadInputPenalty(model, partial(spectral_shrinkage_loss, k=settings.k), settings.eta)


@REGULARIZERS.register("supcon", config=SupConConfig, description="supervised contrastive loss on the pooled "
                       "features (Khosla et al. 2020)")
def supcon(model: TransferModel, settings: SupConConfig) -> TrainHooks:
    penalty = partial(supervised_contrastive_loss, temperature=settings.temperature)
    return HeadInputPenalty(model, penalty, settings.weight)


@REGULARIZERS.register("cosine_pairs", config=CosinePairsConfig, description="SetFit's pair loss: cosine "
                       "similarity of every pair of the batch towards 1 (same class) or 0")
def cosine_pairs(model: TransferModel, settings: CosinePairsConfig) -> TrainHooks:
    return HeadInputPenalty(model, cosine_pair_loss, settings.weight)
