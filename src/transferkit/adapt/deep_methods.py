"""The registered deep adaptation methods: each builds its loss term and calls the shared loop.

Every method takes ``(model, data, config, params)`` and returns an ``AdaptOutcome``; ``params`` is an
instance of its config dataclass (its hyperparameters), and ``grid`` lists the values label-free
selection may search.
``trade_off`` (the weight of the adaptation term) defaults to ``config.trade_off`` and, when that is
None, to the method's own default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.adapt.base import DA_METHODS, AdaptOutcome
from transferkit.adapt.deep import (
    AdaptationTerm,
    AdaptBatch,
    DeepAdaptConfig,
    DeepAdaptData,
    model_device,
    outcome_of,
    predict,
    pretrain_on_source,
    train_adapted,
)
from transferkit.adapt.losses import (
    coral_loss,
    dann_coefficient,
    domain_adversarial_loss,
    entropy_loss,
    entropy_weights,
    gradient_reversal,
    mcc_loss,
    mmd_loss,
    multilinear_map,
    pseudo_label_loss,
)
from transferkit.adapt.selection import confident_pseudo_labels
from transferkit.data import Samples
from transferkit.features import make_loader
from transferkit.heads import TransferModel
from transferkit.train import TrainHooks


def _weight(given: float | None, config: DeepAdaptConfig, default: float) -> float:
    if given is not None:
        return float(given)
    return default if config.trade_off is None else float(config.trade_off)


def _aligned(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, term: AdaptationTerm,
             trade_off: float, **info: object) -> AdaptOutcome:
    result = train_adapted(model, data, config, term=term, trade_off=trade_off)
    return outcome_of(result, trade_off=trade_off, **info)


class DomainDiscriminator(nn.Sequential):
    """``(B, D) -> (B, 1)`` domain logits: two hidden layers with BatchNorm (TLlib's shape)."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1))


@dataclass
class SourceOnlyConfig:
    """No hyperparameters: the baseline trains on the source only."""


@dataclass
class TradeOffConfig:
    """Attributes:
    trade_off: weight of the adaptation term (None: ``DeepAdaptConfig.trade_off``, else the method's default).
    """

    trade_off: float | None = None


@dataclass
class AdversarialConfig(TradeOffConfig):
    """Attributes:
    hidden: width of the domain discriminator's hidden layers.
    """

    hidden: int = 256


@dataclass
class CDANConfig(AdversarialConfig):
    """Attributes:
    entropy: weight confident samples up (CDAN+E); False: plain CDAN.
    """

    entropy: bool = True


@dataclass
class DANConfig(TradeOffConfig):
    """Attributes:
    kernel_mul: ratio between the bandwidths of the MMD's Gaussian kernels.
    kernel_num: number of kernels.
    """

    kernel_mul: float = 2.0
    kernel_num: int = 5


@dataclass
class MCCConfig(TradeOffConfig):
    """Attributes:
    temperature: softmax temperature of the target predictions.
    """

    temperature: float = 2.5


@dataclass
class AdaBNConfig:
    """Attributes:
    samples: target samples the BatchNorm statistics are estimated on (None: all).
    """

    samples: int | None = 10000


@dataclass
class SelfTrainingConfig(TradeOffConfig):
    """Attributes:
    fraction: share of each predicted class taken as pseudo-labels.
    threshold: also require this confidence (None: no threshold).
    """

    fraction: float = 0.5
    threshold: float | None = None


@DA_METHODS.register("deep_source_only", level="deep", config=SourceOnlyConfig, description="no adaptation: the "
                     "same loop, model and label-free epoch selection on source labels only (the baseline)")
def deep_source_only(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig,
                     params: SourceOnlyConfig) -> AdaptOutcome:
    return outcome_of(train_adapted(model, data, config))


@DA_METHODS.register("dann", level="deep", grid={"trade_off": (0.1, 0.3, 1.0)}, config=AdversarialConfig,
                     description="DANN (Ganin et al., JMLR 2016): gradient reversal into a domain discriminator, "
                     "reversal strength ramped up over training")
def dann(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: AdversarialConfig) -> AdaptOutcome:
    trade_off, hidden = params.trade_off, params.hidden
    discriminator = DomainDiscriminator(model.backbone.num_features, hidden)

    def loss(batch: AdaptBatch) -> torch.Tensor:
        features = gradient_reversal(torch.cat([batch.features_s, batch.features_t]),
                                     coeff=dann_coefficient(batch.progress))
        domain = discriminator(features)  # (B_s + B_t, 1)
        size = len(batch.features_s)
        return domain_adversarial_loss(domain_logits_s=domain[:size], domain_logits_t=domain[size:])

    term = AdaptationTerm(loss, modules=(discriminator,))
    return _aligned(model, data, config, term, _weight(trade_off, config, 1.0))


@DA_METHODS.register("cdan", level="deep", grid={"trade_off": (0.1, 0.3, 1.0)}, config=CDANConfig,
                     description="CDAN+E (Long et al., NeurIPS 2018): adversarial alignment of features x class "
                     "probabilities, confident samples weighted up (entropy=False: plain CDAN)")
def cdan(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: CDANConfig) -> AdaptOutcome:
    trade_off, entropy, hidden = params.trade_off, params.entropy, params.hidden
    discriminator = DomainDiscriminator(model.backbone.num_features * len(data.classes), hidden)

    def loss(batch: AdaptBatch) -> torch.Tensor:
        features = torch.cat([batch.features_s, batch.features_t])
        logits = torch.cat([batch.logits_s, batch.logits_t])
        probs = torch.softmax(logits.float().detach(), dim=1)  # conditioning only: no gradient into the head
        mapped = gradient_reversal(multilinear_map(features=features.float(), probs=probs),
                                   coeff=dann_coefficient(batch.progress))
        domain = discriminator(mapped)
        size = len(batch.features_s)
        weights = entropy_weights(logits=logits) if entropy else None
        return domain_adversarial_loss(domain_logits_s=domain[:size], domain_logits_t=domain[size:],
                                       weights_s=None if weights is None else weights[:size],
                                       weights_t=None if weights is None else weights[size:])

    term = AdaptationTerm(loss, modules=(discriminator,))
    return _aligned(model, data, config, term, _weight(trade_off, config, 1.0), entropy=entropy)


@DA_METHODS.register("dan", level="deep", grid={"trade_off": (0.3, 1.0, 3.0)}, config=DANConfig,
                     description="DAN (Long et al., ICML 2015): multi-kernel MMD between source and target features")
def dan(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: DANConfig) -> AdaptOutcome:
    trade_off, kernel_mul, kernel_num = params.trade_off, params.kernel_mul, params.kernel_num

    def loss(batch: AdaptBatch) -> torch.Tensor:
        return mmd_loss(features_s=batch.features_s, features_t=batch.features_t, kernel_mul=kernel_mul,
                        kernel_num=kernel_num)

    return _aligned(model, data, config, AdaptationTerm(loss), _weight(trade_off, config, 1.0))


@DA_METHODS.register("deep_coral", level="deep", grid={"trade_off": (10.0, 100.0, 1000.0)}, config=TradeOffConfig,
                     description="Deep CORAL (Sun & Saenko, 2016): match second-order statistics of source and "
                     "target features")
def deep_coral(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig,
               params: TradeOffConfig) -> AdaptOutcome:
    trade_off = params.trade_off

    def loss(batch: AdaptBatch) -> torch.Tensor:
        return coral_loss(features_s=batch.features_s, features_t=batch.features_t)

    # the loss is divided by 4 D^2, so it needs a large weight to matter next to the cross-entropy
    return _aligned(model, data, config, AdaptationTerm(loss), _weight(trade_off, config, 100.0))


@DA_METHODS.register("mcc", level="deep", grid={"trade_off": (0.3, 1.0, 3.0)}, config=MCCConfig,
                     description="MCC (Jin et al., ECCV 2020): minimum class confusion on target predictions")
def mcc(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: MCCConfig) -> AdaptOutcome:
    trade_off, temperature = params.trade_off, params.temperature

    def loss(batch: AdaptBatch) -> torch.Tensor:
        return mcc_loss(logits_t=batch.logits_t, temperature=temperature)

    return _aligned(model, data, config, AdaptationTerm(loss), _weight(trade_off, config, 1.0))


@DA_METHODS.register("entropy", level="deep", grid={"trade_off": (0.03, 0.1, 0.3)}, config=TradeOffConfig,
                     description="entropy minimisation on target predictions (Grandvalet & Bengio, 2005)")
def entropy_minimisation(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig,
                         params: TradeOffConfig) -> AdaptOutcome:
    trade_off = params.trade_off

    def loss(batch: AdaptBatch) -> torch.Tensor:
        return entropy_loss(logits_t=batch.logits_t)

    return _aligned(model, data, config, AdaptationTerm(loss), _weight(trade_off, config, 0.1))


class TargetBatchNorm(TrainHooks):
    """AdaBN: after each epoch, BatchNorm running statistics are re-estimated on target samples.

    Training itself normalises each batch by its own statistics, so this changes only what the model
    uses at inference (and what selection scores); the kept epoch carries target statistics.
    """

    def __init__(self, target: Samples, *, batch_size: int) -> None:
        self.target, self.batch_size = target, batch_size

    @torch.no_grad()
    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        assert isinstance(model, TransferModel)
        target_statistics(model, self.target, batch_size=self.batch_size)
        return None


@torch.no_grad()
def target_statistics(model: TransferModel, target: Samples, *, batch_size: int) -> None:
    """Replace every BatchNorm's running mean and variance by their averages over ``target``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    model.eval()  # dropout off; only the BatchNorm layers update their statistics
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches
        m.train()
    device = model_device(model)
    for batch, _ in make_loader(target, model.backbone, None, train=False, batch_size=batch_size):
        model.backbone.forward_features(**{k: v.to(device) for k, v in batch.items()})
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


@DA_METHODS.register("adabn", level="deep", config=AdaBNConfig, description="AdaBN (Li et al., 2016): train on "
                     "the source, then use BatchNorm statistics of the target domain")
def adabn(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, params: AdaBNConfig) -> AdaptOutcome:
    samples = params.samples
    target = data.target
    if samples is not None and len(target) > samples:
        target = target.subset(np.sort(np.random.default_rng(config.seed).choice(len(target), samples, False)))
    result = train_adapted(model, data, config, hooks=(TargetBatchNorm(target, batch_size=256),))
    return outcome_of(result, statistics_samples=len(target))


class PseudoLabels(TrainHooks):
    """Per-target-sample pseudo-labels, ``-1`` where the sample has none, made by ``make(model)`` before
    each epoch.

    The table, the epoch it was made for and the share of samples labelled at each refresh are the
    hook's state: a run resumed mid-epoch goes on with the labels that epoch started with.
    """

    def __init__(self, make: Callable[[TransferModel], torch.Tensor]) -> None:
        self.make = make
        self.labels = torch.empty(0, dtype=torch.long)
        self.epoch = -1
        self.rates: list[float] = []

    def on_epoch_start(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if epoch == self.epoch:
            return  # resumed inside this epoch: its labels came back with the checkpoint
        assert isinstance(model, TransferModel)
        self.labels, self.epoch = self.make(model), epoch
        self.rates.append(int((self.labels >= 0).sum()) / len(self.labels))

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.labels.to(index.device)[index]

    def state_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "epoch": self.epoch, "rates": list(self.rates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels, self.epoch, self.rates = state["labels"], state["epoch"], list(state["rates"])


@DA_METHODS.register("self_training", level="deep", grid={"fraction": (0.3, 0.5, 0.8)}, config=SelfTrainingConfig,
                     description="self-training: source model first, then cross-entropy on class-balanced confident "
                     "target pseudo-labels, refreshed every epoch")
def self_training(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig,
                  params: SelfTrainingConfig) -> AdaptOutcome:
    trade_off, fraction, threshold = params.trade_off, params.fraction, params.threshold
    source_history = pretrain_on_source(model, data, config)

    def confident(current: TransferModel) -> torch.Tensor:
        _, probs = predict(current, data.target, batch_size=256)
        indices, labels = confident_pseudo_labels(probs, fraction=fraction, threshold=threshold)
        table = torch.full((len(data.target),), -1, dtype=torch.long)
        table[torch.from_numpy(indices)] = torch.from_numpy(labels).long()
        return table

    pseudo = PseudoLabels(confident)

    def loss(batch: AdaptBatch) -> torch.Tensor:
        return pseudo_label_loss(logits_t=batch.logits_t, pseudo_labels=pseudo.lookup(batch.target_index))

    weight = _weight(trade_off, config, 1.0)
    result = train_adapted(model, data, config, term=AdaptationTerm(loss), trade_off=weight, hooks=(pseudo,))
    return outcome_of(result, trade_off=weight, source_history=source_history, pseudo_label_rate=pseudo.rates)
