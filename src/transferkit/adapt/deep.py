"""Deep domain adaptation on the shared training loop, with label-free model selection.

A deep method trains a ``TransferModel`` on labelled source batches while the loop forwards an
unlabelled target batch alongside each one (``JointForward``, one forward pass for both so that
BatchNorm sees both domains, as TLlib and skada do). The method contributes an ``AdaptationTerm``: a
loss over an ``AdaptBatch`` (source/target features and logits, source labels) built from the pure
functions of ``transferkit.adapt.losses``, plus any modules it trains (a domain discriminator).

Epochs are chosen without target labels: after each epoch the model predicts a fixed subset of the
unlabelled target samples and the loop keeps the epoch with the highest soft neighbourhood density
(``transferkit.adapt.selection``). Labelled target samples given as ``DeepAdaptConfig.oracle`` are
scored each epoch for the report only, beside that choice; they never choose anything.

With ``DeepAdaptConfig.checkpoint_dir`` each run of the loop checkpoints into its own stage folder
(``source/`` for the source pre-training of self-training and SHOT, ``adapt/`` for the adaptation),
hooks' state included (discriminator, target batch stream, pseudo-labels), so that a run resumed with
``resume=True`` skips finished stages and ends as the uninterrupted run would.

Entry point: ``adapt_model(model, source, target, classes, method, config, params)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from accelerate.data_loader import skip_first_batches
from torch import nn
from torch.utils.data import DataLoader

from transferkit.adapt.base import DA_METHODS, AdaptOutcome
from transferkit.adapt.losses import entropy
from transferkit.adapt.selection import soft_neighbourhood_density
from transferkit.checkpoint import read_progress
from transferkit.config import config_dict
from transferkit.data import Samples
from transferkit.errors import ConfigError, DataError
from transferkit.features import make_loader
from transferkit.heads import TransferModel
from transferkit.strategies import run as finetuning  # the one fine-tuning run
from transferkit.train import TrainHooks, TrainResult


@dataclass
class DeepAdaptConfig:
    """Settings shared by every deep adaptation method.

    Attributes:
        epochs: adaptation epochs (passes over the source data; target batches are drawn alongside).
        lr: peak learning rate (None: 1e-3 for a backbone trained from scratch, the fine-tuning default of
            the modality for a pretrained one).
        batch_size: source samples per batch; as many target samples ride along.
        trade_off: weight of the adaptation term (None: the method's own default).
        weight_decay: AdamW weight decay (not on biases and norms).
        warmup_ratio: share of the steps spent warming the learning rate up before cosine decay.
        seed: seed for initialisation, batch order and augmentation.
        progress: show progress bars.
        source_epochs: epochs of source training before adapting, for methods that start from a source
            model (self-training, SHOT); 0 means the model given is already trained on the source.
        selection: ``"snd"`` keeps the epoch with the best soft neighbourhood density on target
            predictions; ``"last"`` keeps the last epoch.
        selection_samples: unlabelled target samples scored for selection after each epoch.
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it natively).
        oracle: labelled target samples whose accuracy is recorded each epoch for the report only (the
            oracle choice beside the label-free one); never used for training or selection.
        checkpoint_dir: folder for training checkpoints, one sub-folder per stage (None: no checkpoints);
            they stay there after the run (``transferkit.checkpoint.remove_checkpoints`` deletes them).
        checkpoint_every: also checkpoint every this many optimizer steps (None or 0: only by time).
        resume: continue from the checkpoints in ``checkpoint_dir``: finished stages are not trained again,
            the unfinished one goes on from its last checkpoint, and the run ends as an uninterrupted one
            with the same settings would; a checkpoint of other settings is refused.
    """

    epochs: int = 10
    lr: float | None = None
    batch_size: int = 64
    trade_off: float | None = None
    weight_decay: float = 5e-4
    warmup_ratio: float = 0.05
    seed: int = 0
    progress: bool = True
    source_epochs: int = 5
    selection: Literal["snd", "last"] = "snd"
    selection_samples: int = 2000
    mixed_precision: str = "no"
    oracle: Samples | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False


@dataclass
class DeepAdaptData:
    """Labelled source samples (class indices into ``classes``) and unlabelled target samples.

    ``run`` names the method and its parameters (set by ``adapt_model``); checkpoints carry it in their
    signature, so a resume with another method or other parameters is refused.
    """

    source: Samples
    source_ids: list[int]
    target: Samples
    classes: list[str]
    run: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdaptBatch:
    """What an adaptation term sees at one step. Shapes: features ``(B, D)``, logits ``(B, C)``.

    ``target_index`` holds the positions of the target samples in ``DeepAdaptData.target`` (for
    pseudo-label look-ups); ``progress`` runs from 0 to 1 over the adaptation steps.
    """

    features_s: torch.Tensor
    features_t: torch.Tensor
    logits_s: torch.Tensor
    logits_t: torch.Tensor
    y_s: torch.Tensor
    target_index: torch.Tensor
    progress: float


@dataclass
class AdaptationTerm:
    """A method's contribution to the loss, and what it needs besides the model.

    Attributes:
        loss: ``AdaptBatch -> scalar``, multiplied by the trade-off and added to the source cross-entropy.
        modules: extra trained modules (a domain discriminator); the optimizer gets them at the head's rate,
            and their weights are checkpointed with the loop's.

    State the loss reads that changes between epochs (pseudo-labels) lives in a ``TrainHooks`` passed
    to ``train_adapted`` beside the term, which refreshes it and checkpoints it (``deep_methods.PseudoLabels``).
    """

    loss: Callable[[AdaptBatch], torch.Tensor]
    modules: tuple[nn.Module, ...] = ()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: TransferModel, samples: Samples, *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``(N, D)`` and class probabilities ``(N, C)``: eval mode, no augmentation."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    features, probs = [], []
    for batch, _ in make_loader(samples, model.backbone, None, train=False, batch_size=batch_size):
        pooled = model.backbone.forward_features(**{k: v.to(device) for k, v in batch.items()})  # (B, D)
        features.append(pooled.float().cpu().numpy())
        probs.append(torch.softmax(model.head(pooled).float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(features), np.concatenate(probs)


class TargetBatches:
    """An endless stream of shuffled, augmented target batches ``(batch, indices)``.

    The loader's label slot carries each sample's index into the target samples, so that a method
    can look up per-sample state (pseudo-labels). Each pass has its own order (``EpochSampler``), so the
    position in the stream (passes begun, batches taken from the current one) is all a resumed run needs.
    """

    def __init__(self, target: Samples, model: TransferModel, *, batch_size: int, seed: int) -> None:
        self.loader: DataLoader = make_loader(target, model.backbone, list(range(len(target))), train=True,
                                              batch_size=batch_size, seed=seed)
        self.passes, self.taken = 0, 0
        self.iterator: Iterator[Any] = iter(())

    def __next__(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.loader.sampler.set_epoch(self.passes)  # type: ignore[union-attr, attr-defined]
            self.passes, self.taken = self.passes + 1, 0
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        self.taken += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "taken": self.taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the stream where ``state`` left it: the same pass, without loading the batches taken."""
        self.passes, self.taken = state["passes"], state["taken"]
        if self.passes:
            self.loader.sampler.set_epoch(self.passes - 1)  # type: ignore[union-attr, attr-defined]
            self.iterator = iter(skip_first_batches(self.loader, self.taken))


def _joint(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """One batch of source then target samples, or None when the two cannot be stacked (text batches
    padded to different lengths)."""
    if source.keys() != target.keys() or any(source[k].shape[1:] != target[k].shape[1:] for k in source):
        return None
    return {k: torch.cat([source[k], target[k]]) for k in source}


class JointForward(TrainHooks):
    """Forwards a target batch with each source batch and adds ``trade_off * term.loss``.

    The head's input is captured by a forward pre-hook (as BSS does), so the model stays a plain
    ``TransferModel`` and the loop's forward goes through whatever wrapper Accelerate put on it.
    """

    def __init__(self, model: TransferModel, target_batches: TargetBatches, term: AdaptationTerm, *,
                 trade_off: float, total_steps: int) -> None:
        self.target_batches, self.term, self.trade_off = target_batches, term, trade_off
        self.total_steps, self.step = max(total_steps, 1), 0
        self.captured: torch.Tensor | None = None
        self.pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.handle = model.head.register_forward_pre_hook(self._capture)

    def _capture(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.captured = args[0]  # (B, D)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target, index = next(self.target_batches)
        device = next(iter(batch.values())).device
        target = {k: v.to(device) for k, v in target.items()}
        for module in self.term.modules:
            module.to(device)  # keeps the same Parameter objects, so the optimizer still holds them
        size = len(next(iter(batch.values())))
        joint = _joint(batch, target)
        if joint is not None:
            logits = model(**joint)  # (B_s + B_t, C)
            assert self.captured is not None
            features = self.captured
            self.pending = (features[:size], features[size:], logits[size:], index.to(device))
            return logits[:size]
        logits_s = model(**batch)
        features_s = self.captured
        logits_t = model(**target)
        assert features_s is not None and self.captured is not None
        self.pending = (features_s, self.captured, logits_t, index.to(device))
        return logits_s

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        assert self.pending is not None, "JointForward.extra_loss needs its forward first"
        features_s, features_t, logits_t, index = self.pending
        progress = min(self.step / self.total_steps, 1.0)
        self.step += 1
        batch = AdaptBatch(features_s=features_s, features_t=features_t, logits_s=logits, logits_t=logits_t,
                           y_s=labels, target_index=index, progress=progress)
        self.pending = None
        return self.trade_off * self.term.loss(batch)

    def on_train_end(self, model: nn.Module) -> None:
        self.handle.remove()
        self.captured = self.pending = None

    def parameters(self) -> list[nn.Parameter]:
        return [p for module in self.term.modules for p in module.parameters()]

    def state_dict(self) -> dict[str, Any]:
        # the step sets the reversal schedule; the term's modules are not in the model's state dict
        return {"step": self.step, "target_batches": self.target_batches.state_dict(),
                "modules": [module.state_dict() for module in self.term.modules]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.target_batches.load_state_dict(state["target_batches"])
        for module, weights in zip(self.term.modules, state["modules"], strict=True):
            module.load_state_dict(weights)


class LabelFreeSelection(TrainHooks):
    """After each epoch: soft neighbourhood density and mean entropy of target predictions (no labels).

    ``selection_score`` is the density, except for an epoch whose mean prediction entropy is above half
    the entropy of a uniform guess: near-uniform predictions look dense too (SND's blind spot), and an
    early, still unsure model would otherwise win. Ties (every epoch that unsure) go to the lowest
    training loss.
    """

    def __init__(self, samples: Samples, *, batch_size: int) -> None:
        self.samples, self.batch_size = samples, batch_size

    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        assert isinstance(model, TransferModel)
        _, probs = predict(model, self.samples, batch_size=self.batch_size)
        mean_entropy = float(entropy(torch.log(torch.from_numpy(probs).clamp_min(1e-12))).mean())
        density = soft_neighbourhood_density(probs)
        unsure = mean_entropy > 0.5 * math.log(probs.shape[1])
        return {"target_snd": density, "target_entropy": mean_entropy,
                "selection_score": -math.inf if unsure else density}


class OracleReport(TrainHooks):
    """After each epoch: accuracy on labelled target samples, recorded for the report only."""

    def __init__(self, samples: Samples, classes: list[str], *, batch_size: int) -> None:
        self.samples, self.batch_size = samples, batch_size
        self.label_ids = np.array(label_ids(samples, classes, what="oracle"))

    def on_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, float] | None:
        assert isinstance(model, TransferModel)
        _, probs = predict(model, self.samples, batch_size=self.batch_size)
        return {"oracle_accuracy": float((probs.argmax(axis=1) == self.label_ids).mean())}


def label_ids(samples: Samples, classes: list[str], *, what: str) -> list[int]:
    """Class indices of labelled samples.

    Raises:
        DataError: the samples have no labels, or a label outside ``classes`` (named).
    """
    if samples.labels is None:
        raise DataError(f"the {what} samples have no labels")
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(samples.labels) - set(index))
    if unknown:
        raise DataError(f"{what} labels {unknown[:5]} are not among the classes {classes}")
    return [index[label] for label in samples.labels]


def selection_subset(target: Samples, config: DeepAdaptConfig) -> Samples:
    """A fixed random subset of the unlabelled target samples, scored after each epoch."""
    count = min(config.selection_samples, len(target))
    chosen = np.random.default_rng(config.seed).choice(len(target), size=count, replace=False)
    return target.subset(np.sort(chosen))


def train_adapted(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig, *,
                  term: AdaptationTerm | None = None, trade_off: float = 0.0, epochs: int | None = None,
                  hooks: tuple[TrainHooks, ...] = (), train: tuple[Samples, list[int]] | None = None,
                  train_head: bool = True, stage: str = "adapt") -> TrainResult:
    """One run of the shared loop: cross-entropy on ``train`` (default: the labelled source) plus, with a
    ``term``, the adaptation loss on target batches drawn alongside; label-free epoch selection.

    Args:
        term: the method's adaptation term (None: plain supervised training, e.g. source only).
        trade_off: weight of the term.
        epochs: epochs of this run (default ``config.epochs``).
        hooks: further hooks (pseudo-label refresh, target BatchNorm statistics), run before scoring.
        train: the labelled samples the loop iterates, with their class indices (SHOT iterates the
            target with pseudo-labels here).
        train_head: False freezes the head (SHOT keeps the source hypothesis).
        stage: the sub-folder of ``config.checkpoint_dir`` this run checkpoints into; each call of a
            method needs its own, so that a resume skips the finished ones.

    Raises:
        ConfigError: resuming from a checkpoint written with other settings.
    """
    backbone = model.backbone
    pretrained = backbone.spec.pretrained
    lr = finetuning.default_lr(config.lr, backbone)
    head_scale = finetuning.default_head_lr_scale(finetuning.HEAD_LR_SCALE, pretrained=pretrained)
    samples, ids = train or (data.source, data.source_ids)
    modules = () if term is None else term.modules

    def param_groups() -> list[dict[str, Any]]:
        layer_decay = finetuning.default_layer_decay(None, pretrained=pretrained)
        groups = finetuning.layerwise_param_groups(model, lr=lr, layer_decay=layer_decay, train_last_k=None,
                                                   head_lr_scale=head_scale, weight_decay=config.weight_decay)
        model.head.requires_grad_(train_head)
        if not train_head:
            groups = [group for group in groups if group["name"] != "head"]
        extra = [p for module in modules for p in module.parameters()]
        if extra:
            groups.append({"params": extra, "lr": lr * head_scale, "weight_decay": config.weight_decay,
                           "name": "adaptation"})
        return groups

    def run_hooks(total: int, batch_size: int) -> list[TrainHooks]:
        hook_list: list[TrainHooks] = []
        if term is not None:
            target_batches = TargetBatches(data.target, model, batch_size=batch_size, seed=config.seed + 1)
            hook_list.append(JointForward(model, target_batches, term, trade_off=trade_off, total_steps=total))
        hook_list += [*hooks, LabelFreeSelection(selection_subset(data.target, config), batch_size=256)]
        if config.oracle is not None:
            hook_list.append(OracleReport(config.oracle, data.classes, batch_size=256))
        return hook_list

    epochs = config.epochs if epochs is None else epochs
    settings = finetuning.RunSettings(
        lr=lr, epochs=epochs, batch_size=config.batch_size, warmup_ratio=config.warmup_ratio, seed=config.seed,
        mixed_precision=config.mixed_precision, progress=config.progress,
        monitor="selection_score" if config.selection == "snd" else None,
        checkpoint_dir=Path(config.checkpoint_dir) / stage if config.checkpoint_dir else None,
        checkpoint_every=config.checkpoint_every, resume=config.resume)
    signature = {"run": data.run, "stage": stage, "epochs": epochs, "trade_off": trade_off, "train_head": train_head,
                 "config": finetuning.settings_signature(config), "classes": data.classes,
                 "target_size": len(data.target), "oracle_size": None if config.oracle is None else len(config.oracle)}
    return finetuning.fine_tuning_run(model, (samples, ids), settings, param_groups=param_groups, hooks=run_hooks,
                                      signature=signature, modules=modules).result


def pretrain_on_source(model: TransferModel, data: DeepAdaptData, config: DeepAdaptConfig) -> list[dict[str, Any]]:
    """``config.source_epochs`` of source training (the source model that self-training and SHOT start
    from); nothing when it is 0, i.e. the model given is already the source model. Its history."""
    if config.source_epochs <= 0:
        return []
    return train_adapted(model, data, config, epochs=config.source_epochs, stage="source").history


def outcome_of(result: TrainResult, *, trade_off: float | None = None, **info: Any) -> AdaptOutcome:
    """The outcome of an adaptation run: its history, the kept epoch and the per-epoch scores."""
    history = result.history
    details: dict[str, Any] = {"kept_epoch": result.best_epoch,
                               "target_snd": [row.get("target_snd") for row in history]}
    if trade_off is not None:
        details["trade_off"] = trade_off
    if history and "oracle_accuracy" in history[0]:
        oracle = [row["oracle_accuracy"] for row in history]
        details["oracle_accuracy"] = oracle
        details["oracle_epoch"] = int(np.argmax(oracle)) + 1
    return AdaptOutcome(history=history, info={**details, **info})


def adapt_model(model: TransferModel, source: Samples, target: Samples, classes: list[str], method: str,
                config: DeepAdaptConfig, params: dict[str, Any]) -> AdaptOutcome:
    """Adapt ``model`` (trained in place) from labelled ``source`` to unlabelled ``target`` samples.

    Args:
        model: backbone + head; the head has one output per class of ``classes``.
        source: labelled source samples (class names as strings).
        target: target samples; their labels, if any, are ignored.
        classes: class names in the order of the head's outputs.
        method: a registered deep method (``transferkit.adapt.DA_METHODS``, level ``"deep"``).
        config: shared settings (epochs, learning rate, selection, ...).
        params: the method's own hyperparameters (its config class, ``DA_METHODS.get(method).config``), e.g.
            ``{"trade_off": 0.3}``; text values are read as the fields' types.

    Returns:
        The per-epoch history (training loss, target SND, oracle accuracy when ``config.oracle`` is set)
        and ``info`` with the kept epoch, the SND of every epoch and the wall time.

    Raises:
        ConfigError: unknown method, a feature-level method, or parameters the method does not take;
            ``config.checkpoint_dir`` holds checkpoints but ``config.resume`` is false, or checkpoints of
            a run with other settings.
        DataError: missing source labels, labels outside ``classes``, no target samples, or domains of
            different modalities.

    Example:
        >>> outcome = adapt_model(model, mnist, usps, [str(d) for d in range(10)], "mcc",
        ...                       DeepAdaptConfig(epochs=5), {})
    """
    entry = DA_METHODS.get(method)
    if entry.level != "deep":
        raise ConfigError(f"adaptation method {method!r} works on feature arrays, not on a model")
    if len(target) == 0:
        raise DataError("the target domain has no samples")
    if source.modality != target.modality:
        raise DataError(f"source samples are {source.modality} but target samples are {target.modality}")
    settings = entry.settings(params)
    if config.checkpoint_dir and not config.resume and _has_checkpoints(Path(config.checkpoint_dir)):
        raise ConfigError(f"{config.checkpoint_dir} holds checkpoints of an interrupted adaptation; continue it "
                          "with resume=True (CLI: --resume), or remove the folder to start over")
    data = DeepAdaptData(source, label_ids(source, classes, what="source"), target, list(classes),
                         run={"method": method, "params": config_dict(settings)})
    start = time.perf_counter()
    outcome: AdaptOutcome = entry.fn(model, data, config, settings)
    for p in model.parameters():
        p.requires_grad_(False)
    given = {key: getattr(settings, key) for key in params}
    outcome.info = {"method": method, "params": given, "settings": config_dict(settings), **outcome.info,
                    "wall_s": round(time.perf_counter() - start, 2)}
    return outcome


def _has_checkpoints(folder: Path) -> bool:
    return folder.is_dir() and any(read_progress(stage) for stage in folder.iterdir() if stage.is_dir())

