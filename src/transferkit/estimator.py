"""``TransferClassifier``: the scikit-learn-style facade over backbones, strategies and artifacts."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from transferkit.artifact import load_model_from_run, save_run
from transferkit.backbones import BackboneSpec, create_backbone
from transferkit.checkpoint import read_progress, remove_checkpoints
from transferkit.data import Samples, samples_from_arrays, stratified_split
from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.evaluate import classification_metrics
from transferkit.features import extract_features
from transferkit.heads import LinearHead, TransferModel
from transferkit.strategies import FitConfig, FitData, get_strategy
from transferkit.train import resolve_precision

__version__ = "0.1.0"


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """Fit a pretrained backbone to new labels, for images, texts or waveforms.

    The constructor only stores hyperparameters (scikit-learn's rules): ``fit`` returns ``self``,
    fitted state ends in ``_``, and ``clone``/``get_params`` work.

    Args:
        backbone: a registered name (``transferkit backbones``), ``timm:NAME``, ``hf:NAME_OR_PATH``
            or a local directory.
        strategy: a registered strategy (``linear_probe``, ``finetune``).
        pretrained: start from pretrained weights; False trains the same architecture from scratch.
        backbone_options: source options such as ``{"image_size": 160, "hflip": False}``.
        epochs, lr, batch_size, layer_decay, train_last_k, patience, freeze_bn, probe_c,
        mixed_precision: ``"no"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the hardware
            computes in it natively; about 2.4x faster fine-tuning of MiniLM on an AVX-512 BF16 CPU).
        val_fraction: share of the training data held out (per class) for early stopping and the
            reported validation metrics, for strategies that validate.
        modality: ``image``, ``text`` or ``audio``; inferred from the inputs when None.
        seed: seed for the split, initialisation and shuffling.
        progress: show progress bars.
        regularizers: fine-tuning regularisers to add (``"l2sp"``, ``"bss"``).
        l2sp_alpha, bss_eta: their strengths.
        unfreeze_every: epochs between unfreezing steps of the ``gradual`` strategy.
        contrastive_loss: what the ``contrastive`` strategy tunes the backbone with: ``supcon`` (supervised
            contrastive) or ``cosine_pairs`` (SetFit's pair loss on every pair of a batch).
        contrastive_ce: ``contrastive``: the head's cross-entropy tunes the backbone too (False: only the
            contrastive term does, as in SetFit).
        checkpoint_dir: folder for training checkpoints of the strategies that train with the loop
            (None: no checkpoints); ``fit(resume=True)`` continues an interrupted fit from there.
        checkpoint_every: also checkpoint every this many optimizer steps (None or 0: after each
            epoch only).

    Example:
        >>> clf = TransferClassifier(backbone="minilm", strategy="linear_probe")
        >>> clf.fit(["great film", "awful film", ...], ["pos", "neg", ...]).predict(["loved it"])
    """

    def __init__(self, backbone: str = "efficientnet_lite0", strategy: str = "linear_probe", *,
                 pretrained: bool = True, backbone_options: dict[str, Any] | None = None,
                 epochs: int | None = None, lr: float | None = None, batch_size: int = 32,
                 layer_decay: float | None = None, train_last_k: int | None = None, patience: int | None = 3,
                 freeze_bn: bool | None = None, probe_c: float | None = None, mixed_precision: str = "no",
                 val_fraction: float = 0.1, modality: str | None = None, seed: int = 0,
                 progress: bool = True, regularizers: tuple[str, ...] = (), l2sp_alpha: float = 0.01,
                 bss_eta: float = 0.001, unfreeze_every: int = 1, contrastive_loss: str = "supcon",
                 contrastive_ce: bool = True, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int | None = 1000) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.pretrained = pretrained
        self.backbone_options = backbone_options
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.layer_decay = layer_decay
        self.train_last_k = train_last_k
        self.patience = patience
        self.freeze_bn = freeze_bn
        self.probe_c = probe_c
        self.mixed_precision = mixed_precision
        self.val_fraction = val_fraction
        self.modality = modality
        self.seed = seed
        self.progress = progress
        self.regularizers = regularizers
        self.l2sp_alpha = l2sp_alpha
        self.bss_eta = bss_eta
        self.unfreeze_every = unfreeze_every
        self.contrastive_loss = contrastive_loss
        self.contrastive_ce = contrastive_ce
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    # -- fitting -------------------------------------------------------------------------------
    def _fit_config(self) -> FitConfig:
        return FitConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, layer_decay=self.layer_decay,
                         train_last_k=self.train_last_k, patience=self.patience, freeze_bn=self.freeze_bn,
                         probe_c=self.probe_c, mixed_precision=self.mixed_precision, seed=self.seed,
                         progress=self.progress, regularizers=tuple(self.regularizers),
                         l2sp_alpha=self.l2sp_alpha, bss_eta=self.bss_eta, unfreeze_every=self.unfreeze_every,
                         contrastive_loss=self.contrastive_loss, contrastive_ce=self.contrastive_ce,
                         checkpoint_dir=None if self.checkpoint_dir is None else str(self.checkpoint_dir),
                         checkpoint_every=self.checkpoint_every)

    def fit(self, X: Any, y: Any = None, *, eval_set: tuple[Any, Any] | None = None, resume: bool = False,
            keep_checkpoints: bool = False) -> TransferClassifier:
        """Fit on raw inputs ``X`` (images, texts, waveforms or file paths) and labels ``y``.

        ``X`` may also be a ``Samples`` from ``transferkit.data.read_dataset`` (then ``y`` is unused).
        ``eval_set`` replaces the internal validation split. With ``checkpoint_dir`` set, ``resume``
        continues from the checkpoint there (if any) and ends as an uninterrupted fit with the same
        data and parameters would; the checkpoints are deleted when the fit succeeds, unless
        ``keep_checkpoints`` (the CLI keeps them until the run directory is written).

        Raises:
            DataError: unusable inputs or labels (one class, mismatched lengths, mixed modalities).
            ConfigError: unknown strategy or option; ``checkpoint_dir`` holds a checkpoint but
                ``resume`` is false, or a checkpoint of a run with other parameters.
            BackboneError: unknown backbone, or a backbone of another modality than the data.
            TrainingError: the loss became NaN or infinite (the last good checkpoint is kept).
        """
        resolve_precision(self.mixed_precision)  # a bad name fails now, not after the data are read
        if self.checkpoint_dir is not None and not resume and read_progress(Path(self.checkpoint_dir)):
            raise ConfigError(f"{self.checkpoint_dir} holds a checkpoint of an interrupted fit; continue it with "
                              "fit(resume=True) (CLI: --resume), or remove the folder to start over")
        samples = X if isinstance(X, Samples) else samples_from_arrays(X, y, modality=self.modality)
        if samples.labels is None:
            raise DataError("fit needs labels: pass y, or a labelled dataset")
        classes = sorted(set(samples.labels))
        if len(classes) < 2:
            raise DataError(f"found only one class {classes[0]!r}; need at least two to classify")
        entry = get_strategy(self.strategy)
        torch.manual_seed(self.seed)
        spec = BackboneSpec(self.backbone, pretrained=self.pretrained, options=dict(self.backbone_options or {}))
        backbone = create_backbone(spec)
        if backbone.modality != samples.modality:
            raise DataError(f"backbone {self.backbone!r} takes {backbone.modality} but the data is "
                            f"{samples.modality}; choose a {samples.modality} backbone (`transferkit backbones`)")
        index = {name: i for i, name in enumerate(classes)}
        train, val = samples, None
        if eval_set is not None:
            val = eval_set[0] if isinstance(eval_set[0], Samples) else samples_from_arrays(
                eval_set[0], eval_set[1], modality=samples.modality)
            unknown = sorted(set(val.labels or []) - set(classes))
            if unknown:
                raise DataError(f"validation labels {unknown} do not occur in the training data")
        elif entry.uses_validation and self.val_fraction > 0:
            train_idx, val_idx = stratified_split(samples.labels, self.val_fraction, self.seed)
            if len(val_idx):
                train, val = samples.subset(train_idx), samples.subset(val_idx)
        data = FitData(train=train, train_ids=[index[v] for v in train.labels or []], classes=classes,
                       val=val, val_ids=None if val is None else [index[v] for v in val.labels or []])
        model = TransferModel(backbone, LinearHead(backbone.num_features, len(classes)))
        start = time.perf_counter()
        outcome = entry.fn(model, data, replace(self._fit_config(), resume=resume))
        if self.checkpoint_dir is not None and not keep_checkpoints:
            remove_checkpoints(self.checkpoint_dir)
        self.fit_seconds_ = time.perf_counter() - start
        model.eval()
        self.model_ = model
        self.classes_ = np.array(classes)
        self.modality_ = samples.modality
        self.history_ = outcome.history
        self.strategy_info_ = outcome.info
        self.backbone_trained_ = outcome.backbone_trained
        self.validation_metrics_ = None
        if val is not None and len(val) > 0:
            self.validation_metrics_ = self.evaluate(val)
        return self

    # -- inference -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this TransferClassifier is not fitted yet; call fit first")

    def _samples(self, X: Any) -> Samples:
        if isinstance(X, Samples):
            return X
        return samples_from_arrays(X, None, modality=self.modality_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, C)`` in the order of ``classes_``."""
        self._check_fitted()
        samples = self._samples(X)
        if samples.modality != self.modality_:
            raise DataError(f"this model takes {self.modality_} inputs, not {samples.modality}")
        features = extract_features(self.model_.backbone, samples, batch_size=self.batch_size,
                                    use_cache=not self.backbone_trained_, progress=self.progress)
        with torch.inference_mode():
            logits = self.model_.head(torch.from_numpy(features))
        return torch.softmax(logits.float(), dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class names."""
        probabilities = self.predict_proba(X)  # first, so that an unfitted model raises NotFittedError
        return self.classes_[probabilities.argmax(axis=1)]

    def evaluate(self, X: Any, y: Any = None) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class precision/recall and confusion matrix on labelled data."""
        self._check_fitted()
        samples = X if isinstance(X, Samples) else samples_from_arrays(X, y, modality=self.modality_)
        if samples.labels is None:
            raise DataError("evaluation needs labels")
        unknown = sorted(set(samples.labels) - set(self.classes_.tolist()))
        if unknown:
            raise DataError(f"labels {unknown} were not seen in training (known: {self.classes_.tolist()})")
        predicted = self.predict(samples)
        return classification_metrics(samples.labels, predicted.tolist(), self.classes_.tolist())

    # -- artifact ------------------------------------------------------------------------------
    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run directory (weights, head, label map, preprocessing, spec, config, metrics).

        A LoRA fit stores only its adapter: the backbone is rebuilt from its spec when loading.
        """
        self._check_fitted()
        manifest = {
            "transferkit_version": __version__,
            "modality": self.modality_,
            "classes": self.classes_.tolist(),
            "strategy": self.strategy,
            "estimator_params": {k: str(v) if isinstance(v, Path) else v for k, v in self.get_params().items()},
            "strategy_info": self.strategy_info_,
            "fit_seconds": self.fit_seconds_,
            # fit seeds torch just before building the backbone: this rebuilds random weights
            "backbone_seed": self.seed,
        }
        extra: dict[str, Any] = {"history.json": self.history_}
        if self.validation_metrics_ is not None:
            extra["metrics.json"] = {"validation": self.validation_metrics_}
        return save_run(out, self.model_, manifest, backbone_trained=self.backbone_trained_,
                        adapter_only=self.strategy_info_.get("adapter") == "lora", extra_json=extra,
                        overwrite=overwrite)

    @classmethod
    def load(cls, run: str | Path) -> TransferClassifier:
        """A fitted classifier from a run directory; predictions equal those of the saved one."""
        model, manifest = load_model_from_run(run)
        params = dict(manifest.get("estimator_params", {}))
        defaults = cls().get_params()
        for name, value in params.items():  # JSON has no tuples
            if isinstance(value, list) and isinstance(defaults.get(name), tuple):
                params[name] = tuple(value)
        try:
            clf = cls(**params)
        except TypeError as exc:
            raise ConfigError(f"{run}: unknown estimator parameters: {exc}") from exc
        clf.model_ = model
        clf.classes_ = np.array(manifest["classes"])
        clf.modality_ = manifest["modality"]
        clf.history_ = []
        clf.strategy_info_ = manifest.get("strategy_info", {})
        clf.backbone_trained_ = bool(manifest["backbone_trained"])
        clf.validation_metrics_ = None
        clf.fit_seconds_ = manifest.get("fit_seconds")
        return clf


def load(run: str | Path) -> TransferClassifier:
    """Load a run directory written by ``TransferClassifier.save`` or ``transferkit fit``."""
    return TransferClassifier.load(run)
