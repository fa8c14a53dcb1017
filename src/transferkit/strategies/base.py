"""The strategy contract: how a pretrained backbone is reused to fit the target labels.

A strategy is a function ``(model, data, config, params) -> StrategyOutcome`` registered by name with
its own config class (``params`` is an instance of it). It fits
``model.head`` (and, if it chooses, parts of ``model.backbone``) in place, using the shared
training loop or cached features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from transferkit.config import make_config, settings_listing
from transferkit.data import Samples
from transferkit.heads import TransferModel
from transferkit.registry import Registry
from transferkit.tasks import Classification, Task


@dataclass
class FitConfig:
    """The loop and optimiser settings every strategy shares; ``None`` means "the strategy's default".

    What is particular to one strategy (LoRA's rank, gradual's schedule, the probe's C) is in that
    strategy's own config class (``StrategyEntry.config``), and each regulariser has its own too.

    Attributes:
        epochs: training epochs (fine-tuning strategies).
        lr: peak learning rate of the last backbone layer group.
        batch_size: samples per batch (per process).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        warmup_ratio: fraction of the steps spent warming the learning rate up (then cosine decay).
        layer_decay: learning rate multiplier per layer group towards the input (1.0: same rate).
        head_lr_scale: the new head's learning rate relative to ``lr``.
        patience: early-stopping patience in epochs on the validation split.
        freeze_bn: keep BatchNorm statistics frozen (None: frozen for pretrained backbones).
        grad_accum: batches per optimizer step.
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it natively).
        seed: seed for initialisation, shuffling and augmentation.
        progress: show progress bars.
        use_cache: reuse cached backbone features.
        regularizers: the fine-tuning regularisers the loop adds, by registered name, each with its config
            (``{"l2sp": L2SPConfig(alpha=0.1)}``, see ``strategies.regularizers``).
        checkpoint_dir: folder where strategies that train with the loop keep checkpoints (None: none).
        checkpoint_every: also checkpoint every this many optimizer steps (None: only by time).
        resume: continue from the checkpoint in ``checkpoint_dir`` when there is one.
        hooks: further ``train.TrainHooks`` of the caller for the runs that train with the loop (a
            hyperparameter search's pruning hook); they watch the run and do not change what it computes.
    """

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    layer_decay: float | None = None
    head_lr_scale: float = 10.0
    patience: int | None = 3
    freeze_bn: bool | None = None
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    progress: bool = True
    use_cache: bool = True
    regularizers: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    hooks: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitData:
    """Training and (optional) validation samples with their encoded targets.

    Attributes:
        train_ids, val_ids: the targets ``task.encode`` gives (class indices for classification).
        classes: the names of the head's outputs (``task.names``).
        task: what the targets are; None: classification over ``classes``.
    """

    train: Samples
    train_ids: Sequence[Any] | np.ndarray
    classes: list[str]
    val: Samples | None = None
    val_ids: Sequence[Any] | np.ndarray | None = None
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.task is None:
            self.task = Classification(self.classes)

    @property
    def objective(self) -> Task:
        """The task (set in ``__post_init__``)."""
        assert self.task is not None
        return self.task


@dataclass
class StrategyOutcome:
    """What a strategy reports: per-epoch history, whether backbone weights changed, extras."""

    history: list[dict[str, Any]] = field(default_factory=list)
    backbone_trained: bool = False
    info: dict[str, Any] = field(default_factory=dict)


# (model, data, loop settings, the strategy's own config) -> outcome
StrategyFn = Callable[[TransferModel, FitData, FitConfig, Any], StrategyOutcome]


@dataclass(frozen=True)
class StrategyEntry:
    """One registered strategy.

    Attributes:
        name: what ``--strategy`` and ``TransferClassifier(strategy=...)`` call it.
        fn: fits the model in place, ``fn(model, data, config, params) -> StrategyOutcome``.
        description: one line for ``transferkit strategies``.
        config: the strategy's own config dataclass (every field has a default); ``params`` is one, built
            by ``settings``.
        uses_validation: the strategy uses the validation split (early stopping), so one is held out.
    """

    name: str
    fn: StrategyFn
    description: str
    config: type
    uses_validation: bool = True

    def settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """The strategy's config with ``values`` set (text is parsed; see ``transferkit.config.make_config``).

        Raises:
            ConfigError: an unknown key (the message lists the known ones) or a value of the wrong type.
        """
        return make_config(self.config, values, what=f"strategy {self.name!r}")

    def listing(self) -> tuple[str, ...]:
        """The strategy's settings (``--param KEY=VALUE``), for ``transferkit strategies``."""
        return (settings_listing(self.config),)


STRATEGIES: Registry[StrategyEntry] = Registry("strategy", StrategyEntry, hint="see `transferkit strategies`")
"""Strategies by name; ``@STRATEGIES.register("name", description=..., config=...)`` adds one."""
