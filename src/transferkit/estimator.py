"""The scikit-learn-style facade over backbones, tasks, strategies and artifacts.

``TransferEstimator(task=...)`` fits any registered task; ``TransferClassifier`` and ``TransferRegressor``
are the same estimator fixed to classification and regression, with scikit-learn's mixins (``score`` is
accuracy, R²).
"""

from __future__ import annotations

import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from transferkit._version import __version__
from transferkit.artifact import load_model_from_run, save_run
from transferkit.backbones import BackboneSpec
from transferkit.checkpoint import read_progress, remove_checkpoints
from transferkit.config import config_dict
from transferkit.data import Samples
from transferkit.errors import ArtifactError, ConfigError, DataError, NotFittedError
from transferkit.heads import TransferModel
from transferkit.model import build_model, predict_scores, run_manifest
from transferkit.params import check_params
from transferkit.safety import check_writable
from transferkit.strategies import REGULARIZERS, STRATEGIES, FitConfig, FitData
from transferkit.tasks import DEFAULT_TASK, Task, make_task, task_from_manifest
from transferkit.tasks.base import require_labels
from transferkit.train import resolve_precision

__all__ = ["TransferClassifier", "TransferEstimator", "TransferRegressor", "__version__", "load"]


class TransferEstimator(BaseEstimator):
    """Fit a pretrained backbone to new targets (classes, label sets, numbers), for images, texts or waveforms.

    The constructor only stores hyperparameters (scikit-learn's rules): ``fit`` returns ``self``,
    fitted state ends in ``_``, and ``clone``/``get_params`` work.

    Args:
        backbone: a registered name (``transferkit backbones``), ``timm:NAME``, ``hf:NAME_OR_PATH``
            or a local directory.
        strategy: a registered strategy (``linear_probe``, ``finetune``).
        task: a registered task (``classification``, ``multilabel``, ``regression``; ``transferkit tasks``);
            None: the estimator's own (classification for ``TransferEstimator`` and ``TransferClassifier``).
        pretrained: start from pretrained weights; False trains the same architecture from scratch.
        backbone_options: source options such as ``{"image_size": 160, "hflip": False}``.
        strategy_params: the strategy's own settings, by its config class's field names
            (``{"r": 16, "alpha": 32}`` for ``lora``, ``{"unfreeze_every": 2}`` for ``gradual``,
            ``{"c": 0.1}`` for ``linear_probe``; ``transferkit strategies`` lists each config's keys).
        epochs, lr, batch_size, layer_decay, patience, freeze_bn,
        mixed_precision: ``"no"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the hardware
            computes in it natively; about 2.4x faster fine-tuning of MiniLM on an AVX-512 BF16 CPU).
        val_fraction: share of the training data held out (per class) for early stopping and the
            reported validation metrics, for strategies that validate.
        modality: ``image``, ``text`` or ``audio``; inferred from the inputs when None.
        seed: seed for the split, initialisation and shuffling.
        progress: show progress bars.
        regularizers: fine-tuning regularisers to add (``"l2sp"``, ``"bss"``, ``"supcon"``, ``"cosine_pairs"``).
        regularizer_params: their settings, by regulariser name (``{"l2sp": {"alpha": 0.1}}``).
        checkpoint_dir: folder for training checkpoints of the strategies that train with the loop
            (None: no checkpoints); ``fit(resume=True)`` continues an interrupted fit from there.
        checkpoint_every: also checkpoint every this many optimizer steps (None or 0: only by time,
            every ``checkpoint.CHECKPOINT_INTERVAL`` seconds).
        task_params: the task's own settings (detection: ``{"detector": "fcos", "tile_size": 400}``).

    Attributes:
        task_: the fitted ``Task`` (its target encoding); classes_: the names of the head's outputs
        (class or label names; ``["value"]`` for regression); model_, modality_, history_,
        strategy_info_, backbone_trained_, validation_metrics_, fit_seconds_; after ``fit``,
        train_samples_ and validation_samples_ (None without a split), which the report predicts on.

    Example:
        >>> est = TransferEstimator(backbone="minilm", task="multilabel")
        >>> est.fit(["a thriller set in Rome", ...], ["crime|travel", ...]).predict(["a heist in Venice"])
    """

    # the task a convenience subclass is fixed to (None: the ``task`` parameter's)
    _fixed_task: ClassVar[str | None] = None

    def __init__(self, backbone: str = "efficientnet_lite0", strategy: str = "linear_probe", *,
                 task: str | None = None, pretrained: bool = True, backbone_options: dict[str, Any] | None = None,
                 epochs: int | None = None, lr: float | None = None, batch_size: int = 32,
                 strategy_params: dict[str, Any] | None = None, layer_decay: float | None = None,
                 patience: int | None = 3, freeze_bn: bool | None = None, mixed_precision: str = "no",
                 val_fraction: float = 0.1, modality: str | None = None, seed: int = 0,
                 progress: bool = True, regularizers: tuple[str, ...] = (),
                 regularizer_params: dict[str, dict[str, Any]] | None = None,
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = 1000,
                 task_params: dict[str, Any] | None = None) -> None:
        self.backbone = backbone
        self.strategy = strategy
        self.task = task
        self.pretrained = pretrained
        self.backbone_options = backbone_options
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.strategy_params = strategy_params
        self.layer_decay = layer_decay
        self.patience = patience
        self.freeze_bn = freeze_bn
        self.mixed_precision = mixed_precision
        self.val_fraction = val_fraction
        self.modality = modality
        self.seed = seed
        self.progress = progress
        self.regularizers = regularizers
        self.regularizer_params = regularizer_params
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.task_params = task_params

    # -- fitting -------------------------------------------------------------------------------
    def _fit_config(self) -> FitConfig:
        """The loop settings, with each regulariser's config built from ``regularizer_params``.

        Raises:
            ConfigError: settings for a regulariser that is not used, an unknown key or a bad value.
        """
        settings = dict(self.regularizer_params or {})
        unused = sorted(set(settings) - set(self.regularizers))
        if unused:
            raise ConfigError(f"regularizer_params has settings for {', '.join(unused)}, which regularizers "
                              f"({', '.join(self.regularizers) or 'none'}) does not include")
        regularizers = {name: REGULARIZERS.get(name).settings(settings.get(name)) for name in self.regularizers}
        return FitConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, layer_decay=self.layer_decay,
                         patience=self.patience, freeze_bn=self.freeze_bn, mixed_precision=self.mixed_precision,
                         seed=self.seed, progress=self.progress, regularizers=regularizers,
                         checkpoint_dir=None if self.checkpoint_dir is None else str(self.checkpoint_dir),
                         checkpoint_every=self.checkpoint_every)

    def _task_name(self) -> str:
        """The task this estimator fits.

        Raises:
            ConfigError: a ``task`` other than the one a convenience subclass is fixed to.
        """
        fixed = type(self)._fixed_task
        if fixed is not None and self.task not in (None, fixed):
            raise ConfigError(f"{type(self).__name__} fits {fixed}, not {self.task!r}; use "
                              f"TransferEstimator(task={self.task!r})")
        return fixed or self.task or DEFAULT_TASK

    def fit(self, X: Any, y: Any = None, *, eval_set: tuple[Any, Any] | None = None, resume: bool = False,
            keep_checkpoints: bool = False, hooks: tuple[Any, ...] = ()) -> TransferEstimator:
        """Fit on raw inputs ``X`` (images, texts, waveforms or file paths) and targets ``y``.

        ``y`` holds one target per sample: a class name, a list of label names (or ``"a|b"``) for
        ``multilabel``, a number for ``regression``. ``X`` may also be a ``Samples`` from
        ``transferkit.data.read_dataset`` (then ``y`` is unused). ``eval_set`` replaces the internal
        validation split. With ``checkpoint_dir`` set, ``resume`` continues from the checkpoint there
        (if any) and ends as an uninterrupted fit with the same data and parameters would; the
        checkpoints are deleted when the fit succeeds, unless ``keep_checkpoints`` (the CLI keeps them
        until the run directory is written). ``hooks`` (``train.TrainHooks``) watch the training loop of the
        strategies that use it (``transferkit.auto.tune`` prunes trials through one).

        Raises:
            DataError: unusable inputs or targets (one class, a non-numeric regression target,
                mismatched lengths, mixed modalities).
            ConfigError: unknown task, strategy or option; ``checkpoint_dir`` holds a checkpoint but
                ``resume`` is false, or a checkpoint of a run with other parameters.
            BackboneError: unknown backbone, or a backbone of another modality than the data.
            TrainingError: the loss became NaN or infinite (the last good checkpoint is kept).
        """
        check_params(self.get_params())  # out-of-range values fail now, with the CLI's ranges
        resolve_precision(self.mixed_precision)  # bad settings fail now, not after the data are read
        if self.checkpoint_dir is not None:  # an unwritable folder fails now, not at the first checkpoint
            check_writable(Path(self.checkpoint_dir), what="checkpoint folder")
        entry = STRATEGIES.get(self.strategy)
        params = entry.settings(self.strategy_params)
        config = self._fit_config()
        if self.checkpoint_dir is not None and not resume and read_progress(Path(self.checkpoint_dir)):
            raise ConfigError(f"{self.checkpoint_dir} holds a checkpoint of an interrupted fit; continue it with "
                              "fit(resume=True) (CLI: --resume), or remove the folder to start over")
        task = make_task(self._task_name()).configure(dict(self.task_params or {}))
        samples = self._labelled(X, y, task, self.modality)
        task.fit_targets(require_labels(samples.labels, "fit"), origins=samples.label_sources)
        torch.manual_seed(self.seed)
        spec = BackboneSpec(self.backbone, pretrained=self.pretrained, options=dict(self.backbone_options or {}))
        model = build_model(spec, task, modality=samples.modality)
        train, val = samples, None
        if eval_set is not None:
            val = self._labelled(eval_set[0], eval_set[1], task, samples.modality)
        elif entry.uses_validation and self.val_fraction > 0:
            train_idx, val_idx = task.split(samples.labels or [], self.val_fraction, self.seed)
            if len(val_idx):
                train, val = samples.subset(train_idx), samples.subset(val_idx)
        data = FitData(train=train, train_ids=task.encode(train.labels or [], origins=train.label_sources),
                       classes=task.names, val=val,
                       val_ids=None if val is None else task.encode(val.labels or [], source="validation data",
                                                                    origins=val.label_sources),
                       task=task)
        start = time.perf_counter()
        outcome = entry.fn(model, data, replace(config, resume=resume, hooks=tuple(hooks)), params)
        outcome.info |= task.after_fit(model, train, val, batch_size=config.batch_size,
                                       use_cache=config.use_cache and not outcome.backbone_trained)
        # the manifest records each method's whole config, defaults included
        outcome.info["settings"] = {"strategy": config_dict(params),
                                    **{name: config_dict(value) for name, value in config.regularizers.items()},
                                    **({"task": dict(self.task_params)} if self.task_params else {})}
        if self.checkpoint_dir is not None and not keep_checkpoints:
            remove_checkpoints(self.checkpoint_dir)
        self._set_fitted(model, task, samples.modality, history=outcome.history, strategy_info=outcome.info,
                         backbone_trained=outcome.backbone_trained, fit_seconds=time.perf_counter() - start)
        if val is not None and len(val) > 0:
            self.validation_metrics_ = self.evaluate(val, reference=False)
        # what the report shows predictions on (report/evidence.py); references, not copies
        self.train_samples_, self.validation_samples_ = train, val
        return self

    @staticmethod
    def _labelled(X: Any, y: Any, task: Task, modality: str | None) -> Samples:
        if isinstance(X, Samples):
            return X
        return task.samples(X, y, modality=modality)

    def _set_fitted(self, model: TransferModel, task: Task, modality: str, *, history: list[dict[str, Any]],
                    strategy_info: dict[str, Any], backbone_trained: bool, fit_seconds: float | None,
                    validation_metrics: dict[str, Any] | None = None) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model_ = model
        self.task_ = task
        self.classes_ = np.array(task.names)
        self.modality_ = modality
        self.history_ = history
        self.strategy_info_ = strategy_info
        self.backbone_trained_ = backbone_trained
        self.fit_seconds_ = fit_seconds
        self.validation_metrics_: dict[str, Any] | None = validation_metrics

    def with_model(self, model: TransferModel, task: Task, *, strategy_info: dict[str, Any],
                   backbone_trained: bool = False, fit_seconds: float | None = None) -> TransferEstimator:
        """Make this estimator the fitted holder of a model fitted elsewhere; returns ``self``.

        Self-training and adaptation fit heads in their own ways (on pseudo-labels, on aligned
        features); through this they get an estimator that predicts, evaluates and saves a run
        directory exactly as one from ``fit`` would.

        Raises:
            ConfigError: a task other than this estimator's.
        """
        if task.name != self._task_name():
            raise ConfigError(f"this {type(self).__name__} fits {self._task_name()}, not {task.name}")
        task.check_fitted()
        self._set_fitted(model, task, model.backbone.modality, history=[], strategy_info=strategy_info,
                         backbone_trained=backbone_trained, fit_seconds=fit_seconds)
        return self

    # -- inference -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _samples(self, X: Any) -> Samples:
        samples = X if isinstance(X, Samples) else self.task_.samples(X, modality=self.modality_)
        if samples.modality != self.modality_:
            raise DataError(f"this model takes {self.modality_} inputs, not {samples.modality}")
        return samples

    def predict_scores(self, X: Any) -> np.ndarray:
        """The task's scores: class probabilities ``(N, C)`` in the order of ``classes_``, label
        probabilities ``(N, L)``, or values ``(N,)`` in the training targets' units."""
        self._check_fitted()
        return predict_scores(self.model_, self.task_, self._samples(X), batch_size=self.batch_size,
                              use_cache=not self.backbone_trained_, progress=self.progress)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, C)`` (or label probabilities ``(N, L)``) in the order of ``classes_``.

        Raises:
            ConfigError: the task predicts values, not probabilities.
        """
        self._check_fitted()
        if not self.task_.probabilistic:
            raise ConfigError(f"the {self.task_.name} task predicts values, not probabilities; use predict")
        return self.predict_scores(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions: class names, lists of label names (an object array), or numbers."""
        scores = self.predict_scores(X)  # first, so that an unfitted model raises NotFittedError
        return self.task_.predictions(scores)

    def evaluate(self, X: Any, y: Any = None, *, reference: bool = True) -> dict[str, Any]:
        """The task's metrics on labelled data (classification: accuracy, macro-F1, per-class
        precision/recall and confusion matrix; generation: exact match, ROUGE-L, chrF; see
        ``transferkit.evaluate``). With ``reference``, a task's reference model is scored too, under
        ``"zero_shot"`` (generation: the backbone before tuning)."""
        self._check_fitted()
        samples = X if isinstance(X, Samples) else self.task_.samples(X, y, modality=self.modality_)
        if samples.labels is None:
            raise DataError("evaluation needs labels")
        # labels unseen in training: a clear error naming the file and row
        self.task_.encode(samples.labels, source="evaluation data", origins=samples.label_sources)
        metrics = self.task_.metrics(samples.labels, self.predict_scores(samples))
        baseline = self.task_.reference_metrics(self.model_, samples, batch_size=self.batch_size) if reference else None
        return metrics if baseline is None else {**metrics, "zero_shot": baseline}

    def score(self, X: Any, y: Any = None) -> float:
        """The task's main metric (accuracy, micro-F1, R²) on labelled data."""
        metrics = self.evaluate(X, y)  # first, so that an unfitted model raises NotFittedError
        return float(metrics[self.task_.score_name])

    # -- artifact ------------------------------------------------------------------------------
    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run directory (weights, head, task and target encoding, preprocessing, spec, config,
        metrics).

        A LoRA fit stores only its adapter: the backbone is rebuilt from its spec when loading.
        """
        self._check_fitted()
        manifest = run_manifest(
            self.task_, modality=self.modality_, strategy=self.strategy,
            estimator_params={k: str(v) if isinstance(v, Path) else v for k, v in self.get_params().items()},
            strategy_info=self.strategy_info_, fit_seconds=self.fit_seconds_,
            # fit seeds torch just before building the backbone: this rebuilds random weights
            backbone_seed=self.seed)
        extra: dict[str, Any] = {"history.json": self.history_,
                                 "metrics.json": {"validation": self.validation_metrics_}}
        if self.validation_metrics_ is None:  # every run has a metrics.json; this one says why it holds none
            extra["metrics.json"]["no_validation"] = (
                f"the {self.strategy} fit kept no validation split (the linear probe cross-validates on every "
                "labelled sample; fine-tuning with val_fraction 0 trains on all of them)")
        return save_run(out, self.model_, manifest, backbone_trained=self.backbone_trained_,
                        adapter_only=self.strategy_info_.get("adapter") == "lora", extra_json=extra,
                        overwrite=overwrite)

    @classmethod
    def load(cls, run: str | Path) -> TransferEstimator:
        """A fitted estimator from a run directory; predictions equal those of the saved one.

        ``TransferEstimator.load`` (and ``transferkit.load``) returns the estimator of the run's task
        (a ``TransferClassifier`` for classification, also for runs written before tasks existed).

        Raises:
            ArtifactError: the run holds another task than this class fits; missing or corrupt files.
        """
        model, manifest = load_model_from_run(run)
        task = task_from_manifest(manifest)
        target = _ESTIMATORS.get(task.name, TransferEstimator) if cls is TransferEstimator else cls
        if target._fixed_task not in (None, task.name):
            raise ArtifactError(f"{run} holds a {task.name} model, not {target._fixed_task}; load it with "
                                "transferkit.load")
        params = _migrated_params(dict(manifest.get("estimator_params", {})))
        defaults = target().get_params()
        for name, value in params.items():  # JSON has no tuples
            if isinstance(value, list) and isinstance(defaults.get(name), tuple):
                params[name] = tuple(value)
        if target._fixed_task is None:
            params["task"] = task.name
        unknown = sorted(set(params) - set(defaults))
        if unknown:  # named by repr: a key may hold any character, a newline too
            raise ArtifactError(f"{Path(run) / 'transferkit.json'}: field 'estimator_params' holds parameters "
                                f"this transferkit does not know: {', '.join(map(repr, unknown))}")
        estimator = target(**params)
        estimator._set_fitted(model, task, manifest["modality"], history=[],
                              strategy_info=manifest.get("strategy_info", {}),
                              backbone_trained=bool(manifest["backbone_trained"]),
                              fit_seconds=manifest.get("fit_seconds"))
        return estimator


class TransferClassifier(ClassifierMixin, TransferEstimator):
    """``TransferEstimator`` for classification (one class per sample); ``score`` is accuracy.

    Example:
        >>> clf = TransferClassifier(backbone="minilm", strategy="linear_probe")
        >>> clf.fit(["great film", "awful film", ...], ["pos", "neg", ...]).predict(["loved it"])
    """

    _fixed_task = "classification"
    # scikit-learn's mixin would score without checking the labels (0.0 on labels never seen in training)
    score = TransferEstimator.score


class TransferRegressor(RegressorMixin, TransferEstimator):
    """``TransferEstimator`` for regression (one number per sample); ``score`` is R².

    Example:
        >>> reg = TransferRegressor(backbone="minilm")
        >>> reg.fit(["five stars, superb", "dull", ...], [5, 1, ...]).predict(["rather good"])
    """

    _fixed_task = "regression"
    # scikit-learn's mixin would score without checking the labels (0.0 on labels never seen in training)
    score = TransferEstimator.score


# Estimator arguments of run directories written before each method had its own config class:
# old name -> (where it goes now, its name there). Values a strategy's config lacks had no effect on it.
_OLD_PARAMS = {"probe_c": ("strategy", "c"), "train_last_k": ("strategy", "train_last_k"),
               "unfreeze_every": ("strategy", "unfreeze_every"), "contrastive_loss": ("strategy", "loss"),
               "contrastive_ce": ("strategy", "ce"), "l2sp_alpha": ("l2sp", "alpha"), "bss_eta": ("bss", "eta")}


def _migrated_params(params: dict[str, Any]) -> dict[str, Any]:
    """``estimator_params`` of an older run directory in today's form (``strategy_params``, ``regularizer_params``)."""
    old = {name: params.pop(name) for name in list(params) if name in _OLD_PARAMS}
    if not old:
        return params
    try:
        config = STRATEGIES.get(params.get("strategy", "linear_probe")).config
    except ConfigError:
        return params  # an unknown strategy is reported by the constructor's caller
    settings = {f.name for f in fields(config)} if config is not None else set()
    strategy_params = dict(params.get("strategy_params") or {})
    regularizer_params = {k: dict(v) for k, v in (params.get("regularizer_params") or {}).items()}
    for name, value in old.items():
        scope, key = _OLD_PARAMS[name]
        if scope == "strategy":
            if key in settings and value is not None:
                strategy_params.setdefault(key, value)
        elif scope in (params.get("regularizers") or ()):
            regularizer_params.setdefault(scope, {}).setdefault(key, value)
    params["strategy_params"] = strategy_params or None
    params["regularizer_params"] = regularizer_params or None
    return params


# the estimator ``load`` returns for a run of each task (others: TransferEstimator)
_ESTIMATORS: dict[str, type[TransferEstimator]] = {"classification": TransferClassifier,
                                                   "regression": TransferRegressor}


def load(run: str | Path) -> TransferEstimator:
    """Load a run directory written by ``save`` or ``transferkit fit``: the estimator of its task."""
    return TransferEstimator.load(run)
