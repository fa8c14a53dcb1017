"""The task contract: what a model predicts and everything that follows from it.

A task says which backbone output its head reads, how the user's labels become training targets
(and back), which head, loss, validation score and metrics it uses, how its linear probe is fitted
in closed form, and what one prediction looks like in Python, in the CLI's table and in JSON. The
estimator, the strategies, the training loop and the run directory all go through it, so a new
kind of prediction (token tags, boxes, embeddings) is one new registered ``Task``.

A task object carries its fitted target encoding (the class list, the label set, the scaling of a
numeric target): ``fit_targets`` fits it on the training labels, ``state`` writes it into the run's
manifest and ``make_task(name, state)`` restores it.

Example:
    >>> task = make_task("multilabel").fit_targets(["sports|news", "news", "tech"])
    >>> task.names
    ['news', 'sports', 'tech']
    >>> task.encode(["tech|news"])
    array([[1., 0., 1.]], dtype=float32)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import IGNORE_INDEX, OUTPUTS, Output
from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.heads import LinearHead
from transferkit.registry import Registry

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.heads import TransferModel



@dataclass(frozen=True)
class ProbeFit:
    """A linear head fitted in closed form on frozen features: ``outputs = features @ weight.T + bias``.

    Attributes:
        weight: ``(K, D)`` for the raw (unstandardised) features.
        bias: ``(K,)``.
        info: what was chosen (the regularisation strength), for the run's ``strategy_info``.
    """

    weight: np.ndarray
    bias: np.ndarray
    info: dict[str, Any]


class Task(ABC):
    """Base class of every task. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: the registered name (``classification``).
        output: the backbone output the head reads (one of the Backbone contract's ``OUTPUTS``: pooled,
            tokens, feature_maps).
        score_name: the validation score (higher is better) that early stopping and the best epoch
            follow; the loop's history names it ``val_<score_name>``.
        probabilistic: its scores are probabilities (``predict_proba``), not values.
        file_extensions: data files whose extension names this task (``.conll`` is ``ner``), read by
            ``read_data``.
        default_fit: the estimator settings ``transferkit fit`` uses when neither a strategy nor a budget
            is named (``strategy``, ``batch_size``, ``lr``, ``epochs``, ``layer_decay``); empty: the
            automatic choice (``default_fit_settings``).

    A task whose head reads per-sample pooled features uses the defaults of ``samples``,
    ``make_loader``, ``probe_data`` and ``predict_outputs``; a task on another backbone output (token
    tags) overrides them: how its samples become batches, probe features and raw outputs.
    """

    name: ClassVar[str]
    output: ClassVar[Output] = "pooled"
    score_name: ClassVar[str]
    probabilistic: ClassVar[bool] = True
    file_extensions: ClassVar[frozenset[str]] = frozenset()
    default_fit: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    # -- inputs -----------------------------------------------------------------------------------
    def read_data(self, path: Path) -> Samples | None:
        """The labelled samples of a data file in a format of this task's own; None: the generic readers.

        Raises:
            DataError: a malformed file (naming the line).
        """
        return None

    def samples(self, X: Any, y: Any = None, *, modality: str | None = None) -> Samples:
        """The user's in-memory inputs (and targets) as ``Samples``."""
        from transferkit.data import samples_from_arrays

        return samples_from_arrays(X, self.prepare_labels(y), modality=modality)

    def make_loader(self, samples: Samples, backbone: Backbone, targets: Sequence[Any] | None, *, train: bool,
                    batch_size: int, seed: int = 0) -> DataLoader:
        """Batches ``(batch_dict, targets)`` for the loop: one sample and one encoded target per row by default."""
        from transferkit.features import make_loader

        return make_loader(samples, backbone, targets, train=train, batch_size=batch_size, seed=seed)

    def probe_data(self, backbone: Backbone, samples: Samples, targets: Sequence[Any], *, batch_size: int,
                   use_cache: bool, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """The frozen features ``(M, D)`` and targets the linear probe fits on: pooled features by default."""
        from transferkit.features import extract_features

        features = extract_features(backbone, samples, batch_size=batch_size, use_cache=use_cache, progress=progress)
        return features, np.asarray(targets)

    def predict_outputs(self, model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                        progress: bool = False) -> np.ndarray:
        """The head's raw outputs for ``samples``, which ``decode`` turns into scores: ``(N, K)`` by default."""
        from transferkit.features import extract_features

        features = extract_features(model.backbone, samples, batch_size=batch_size, use_cache=use_cache,
                                    progress=progress)
        with torch.inference_mode():
            return model.head(torch.from_numpy(features)).float().numpy()

    def configure(self, settings: dict[str, Any]) -> Task:
        """Set the task's own settings (``TransferEstimator(task_params=...)``, ``--param task.KEY=VALUE``),
        stored with its encoding; returns ``self``. Tasks without settings refuse any.

        Raises:
            ConfigError: a setting this task does not have, or a bad value.
        """
        if settings:
            raise ConfigError(f"the {self.name} task has no settings; got {', '.join(sorted(settings))}")
        return self

    # -- targets ----------------------------------------------------------------------------------
    def prepare_labels(self, y: Any) -> Any:
        """The user's ``y`` in the form ``samples_from_arrays`` takes (one string or number per sample).

        Raises:
            DataError: a value this task cannot take.
        """
        return y

    @abstractmethod
    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Task:
        """Fit the target encoding on the training labels; returns ``self``. ``origins``, one per
        label (``Samples.label_sources``), name the file and row of a bad label in errors.

        Raises:
            DataError: labels that cannot train this task (one class, a constant target, ...).
        """

    @abstractmethod
    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        """Training targets for ``labels``: ``(N,)`` or ``(N, K)`` of ``target_dtype``.

        Raises:
            DataError: a label the fitted encoding does not know (named with ``source`` and, when
                given, the origin of its first occurrence).
        """

    @property
    @abstractmethod
    def names(self) -> list[str]:
        """The names of the head's outputs (classes, labels, or the one target)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The fitted encoding as JSON (written into the run's manifest)."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state`` returned."""

    @property
    def fitted(self) -> bool:
        return bool(self.names)

    def check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"the {self.name} task has no target encoding yet; call fit_targets first")

    def split(self, labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(train_idx, val_idx)``: the validation split of ``fraction`` of the samples (random)."""
        from transferkit.data.split import random_split

        return random_split(len(labels), fraction, seed)

    # -- model ------------------------------------------------------------------------------------
    def num_outputs(self) -> int:
        """Outputs of the head per sample."""
        self.check_fitted()
        return len(self.names)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        """The head on ``num_features``-dimensional pooled features: ``(B, D) -> (B, K)``."""
        return LinearHead(num_features, self.num_outputs(), dropout=dropout)

    def head_for(self, backbone: Backbone, dropout: float = 0.0) -> nn.Module:
        """The head of a model on ``backbone`` (``model.build_model`` and loading a run call this): ``build_head``
        on its ``num_features`` by default; a head on feature maps (a detector) reads more of the backbone."""
        return self.build_head(backbone.num_features, dropout)

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        """The training loss of the head's ``outputs`` for encoded ``targets`` (``"mean"`` or ``"sum"``)."""

    def validation_outputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """What ``score`` needs of one validation batch's outputs, kept until the split is done: all of them
        by default (a generation task keeps the predicted tokens, not the vocabulary's logits)."""
        return outputs

    def join_batches(self, outputs: list[Any], targets: list[Any]) -> tuple[Any, Any]:
        """The validation batches' outputs and targets as ``score`` takes them: tensors joined along the first
        axis, per-token batches of several lengths padded to the longest (targets with ``IGNORE_INDEX``)."""
        return concat_batches([o.float() for o in outputs], 0.0), concat_batches(targets, IGNORE_INDEX)

    @abstractmethod
    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The validation score ``score_name`` of ``outputs`` (all validation samples) for ``targets``."""

    @abstractmethod
    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """The linear probe: a scikit-learn linear model on frozen ``features (N, D)``, chosen on them only.

        Args:
            c: the inverse regularisation strength (None: chosen by cross-validation on ``features``).
        """

    def after_fit(self, model: TransferModel, train: Samples, val: Samples | None, *, batch_size: int,
                  use_cache: bool) -> dict[str, Any]:
        """What the task fits on the trained model itself, after the strategy (verification: enrolment and
        thresholds); returns facts for the run's ``strategy_info``. Nothing by default."""
        return {}

    # -- predictions ------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """The head's raw ``outputs (N, K)`` as the task's scores: probabilities, or values in the
        user's units."""

    @abstractmethod
    def predictions(self, scores: np.ndarray) -> np.ndarray:
        """One prediction per row of ``decode``'s scores, ``(N,)``: class names, lists of label names (an
        object array), or numbers."""

    @abstractmethod
    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        """The evaluation metrics (JSON) of ``scores`` against the true ``labels``."""

    def reference_metrics(self, model: TransferModel, samples: Samples, *,
                          batch_size: int = 32) -> dict[str, Any] | None:
        """The metrics of a reference model on the same labelled ``samples``, reported beside the fitted
        model's (generation: the backbone before tuning); None: no reference."""
        return None

    def set_generation(self, *, max_new_tokens: int | None = None, temperature: float | None = None) -> None:
        """Change how predictions are generated (tasks that generate text).

        Raises:
            ConfigError: this task does not generate.
        """
        raise ConfigError(f"the {self.name} task does not generate text: max_new_tokens and temperature are for "
                          "generation runs")

    @abstractmethod
    def format_metrics(self, metrics: dict[str, Any]) -> str:
        """A short human-readable summary of ``metrics``."""

    @abstractmethod
    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        """One sample's prediction as a JSON object (without the input's name)."""

    @abstractmethod
    def table_row(self, record: dict[str, Any]) -> list[str]:
        """``record`` as the CLI's tab-separated columns after the input's name."""

    def json_line(self, origin: str, record: dict[str, Any]) -> Any:
        """What ``predict --json`` prints of one input, as one JSON line: by default the record with the
        input's name first, ``{"input": origin, **record}``."""
        return {"input": origin, **record}

    def draw(self, item: Any, scores: Any) -> Any:
        """The input ``item`` with its prediction drawn on it (a PIL image), for ``predict --draw``; ``scores``
        None only asks whether the task draws.

        Raises:
            ConfigError: the task's predictions are not drawn on the input.
        """
        raise ConfigError(f"--draw draws boxes on images; a {self.name} run predicts no boxes")


@dataclass(frozen=True)
class TaskEntry:
    name: str
    target: type[Task]
    description: str
    output: str

    def listing(self) -> tuple[str, ...]:
        """The backbone output the task reads, for `transferkit list task`."""
        return (self.output,)


def _make_entry(name: str, target: type[Task], *, description: str) -> TaskEntry:
    if target.output not in OUTPUTS:
        raise ValueError(f"task {name!r} reads {target.output!r}; choose one of {OUTPUTS}")
    target.name = name
    return TaskEntry(name, target, description, target.output)


TASKS: Registry[TaskEntry] = Registry("task", _make_entry, hint="see `transferkit list task`")
DEFAULT_TASK = "classification"


def make_task(name: str = DEFAULT_TASK, state: dict[str, Any] | None = None) -> Task:
    """A new task object, unfitted, or with the fitted encoding ``state`` of a run's manifest.

    Raises:
        ConfigError: an unknown task name.
    """
    task = TASKS.get(name).target()
    if state is not None:
        task.load_state(state)
    return task


def task_from_manifest(manifest: dict[str, Any]) -> Task:
    """The fitted task of a run's manifest; runs written before tasks existed are classification.

    Raises:
        ConfigError: an unknown task name.
    """
    recorded = manifest.get("task")
    if recorded is None:
        return make_task(DEFAULT_TASK, {"classes": manifest["classes"]})
    if not isinstance(recorded, dict) or "name" not in recorded:
        raise ConfigError(f"the manifest's task is {recorded!r}; expected an object with a name")
    return make_task(recorded["name"], recorded.get("encoding", {}))


def default_fit_settings(name: str) -> dict[str, Any]:
    """The task's ``default_fit``: what ``fit`` does for task ``name`` when the user names neither a
    strategy nor a budget (the ``ner`` task fine-tunes); empty: the automatic choice (``auto.choose``).

    Raises:
        ConfigError: an unknown task name.
    """
    return dict(TASKS.get(name).target.default_fit)


def task_for_file(path: str | Path) -> str | None:
    """The task whose own data format a file's extension names (``data.conll``: ``ner``), or None."""
    suffix = Path(path).suffix.lower()
    found = [name for name in TASKS.names() if suffix in TASKS.get(name).target.file_extensions]
    return found[0] if found else None


def task_manifest(task: Task) -> dict[str, Any]:
    """What the run's manifest records about ``task``: its name, its backbone output and its encoding."""
    return {"name": task.name, "output": task.output, "encoding": task.state()}


def standardised_features(features: np.ndarray, *, zero_dead: bool = True) -> tuple[np.ndarray, np.ndarray,
                                                                                 np.ndarray]:
    """``(scaled, mean, scale)``: features standardised for a probe; dead dimensions get an infinite scale.

    Dead dimensions (all-MiniLM-L6-v2 has three whose values stay below 1e-7) would need weights of
    1e30 in a head on the raw features, which float32 cannot carry: ``fold_scaling`` gives them no
    weight, and with ``zero_dead`` they are zeros in ``scaled`` too, so that the probe is fitted
    without what the head will not have.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    dead = scaler.scale_ <= 1e-6 * max(float(scaler.scale_.max()), 1e-12)
    scaled = scaler.transform(features)
    if zero_dead:
        scaled[:, dead] = 0.0
    return scaled, scaler.mean_, np.where(dead, np.inf, scaler.scale_)


def fit_logistic(scaled: np.ndarray, targets: np.ndarray, *, folds: int, c: float | None,
                 seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """An L2 logistic regression on standardised features: ``(coef, intercept, chosen C)``.

    C is chosen by ``min(5, folds)``-fold cross-validation on log-loss unless ``c`` is given (or there
    are too few samples per class to cross-validate: then C = 1). Log-loss breaks the ties that
    accuracy leaves on few samples, which would favour the strongest penalty.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    if c is None and folds >= 2:
        probe = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=min(5, folds), max_iter=2000,
                                     scoring="neg_log_loss", l1_ratios=(0.0,), use_legacy_attributes=False,
                                     random_state=seed).fit(scaled, targets)
        chosen = float(np.ravel(probe.C_)[0])
    else:
        chosen = 1.0 if c is None else c
        probe = LogisticRegression(C=chosen, max_iter=2000, random_state=seed).fit(scaled, targets)
    return probe.coef_, probe.intercept_, chosen


def fold_scaling(coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 info: dict[str, Any]) -> ProbeFit:
    """A probe fitted on standardised features as a linear layer on the raw ones.

    ``W x_scaled + b = (W / s) x + (b - (W / s) mu)``; dimensions of infinite ``scale`` (dead) get no weight.
    """
    dead = np.isinf(scale)
    coef = np.where(dead, 0.0, coef)
    weight = coef / np.where(dead, 1.0, scale)
    bias = intercept - weight @ mean
    return ProbeFit(weight.astype(np.float32), bias.astype(np.float32), info)


def concat_batches(tensors: list[torch.Tensor], pad: float) -> torch.Tensor:
    """Batches joined along the first axis; batches of several lengths (``(B, T, ...)``) padded to the longest first."""
    if tensors[0].ndim >= 2 and len({t.shape[1] for t in tensors}) > 1:
        longest = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, longest - t.shape[1]), value=pad)
                   for t in tensors]
    return torch.cat(tensors)


def label_place(source: str, origins: Sequence[str] | None, index: int) -> str:
    """What an error about label ``index`` names: ``source (its origin)``, or ``source`` alone.

    Example:
        >>> label_place("validation data", ["val.csv row 2", "val.csv row 3"], 1)
        'validation data (val.csv row 3)'
    """
    return f"{source} ({origins[index]})" if origins is not None else source


def require_labels(labels: Sequence[str] | None, what: str) -> Sequence[str]:
    """``labels``, or DataError when there are none."""
    if labels is None:
        raise DataError(f"{what} needs labels: pass y, or a labelled dataset")
    return labels


def infer_task(labels: Sequence[str], source: str, *, repeated_files: bool = False) -> str:
    """The task a dataset's labels call for when none is named.

    ``a|b`` labels (or, with ``repeated_files``, a file held in several class folders) are
    multi-label. Labels that are all numbers could be classes (``0``/``1``) or quantities (a
    rating): that is not guessed.

    Args:
        source: where the labels come from, for the message.
        repeated_files: the data is a folder in which some file sits in several class folders.

    Raises:
        ConfigError: every label is a number; the message asks for ``--task``.
    """
    if repeated_files or any("|" in label for label in labels):
        return "multilabel"
    if labels and all(_is_number(label) for label in labels):
        shown = ", ".join(sorted(set(labels), key=float)[:5])
        raise ConfigError(f"the labels of {source} are all numbers ({shown}{', ...' if len(set(labels)) > 5 else ''}); "
                          "pass --task classification to treat them as classes, or --task regression to predict "
                          "the number")
    return DEFAULT_TASK


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
