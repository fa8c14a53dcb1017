"""The strategy contract: how a pretrained backbone is reused to fit the target labels.

A strategy is a function ``(model, data, config) -> StrategyOutcome`` registered by name. It fits
``model.head`` (and, if it chooses, parts of ``model.backbone``) in place, using the shared
training loop or cached features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from transferkit.data import Samples
from transferkit.heads import TransferModel
from transferkit.registry import Registry
from transferkit.tasks import Classification, Task


@dataclass
class FitConfig:
    """Hyperparameters shared by the strategies; ``None`` means "the strategy's default".

    Attributes:
        epochs: training epochs (fine-tuning strategies).
        lr: peak learning rate of the last backbone layer group.
        batch_size: samples per batch (per process).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        warmup_ratio: fraction of the steps spent warming the learning rate up (then cosine decay).
        layer_decay: learning rate multiplier per layer group towards the input (1.0: same rate).
        train_last_k: fine-tune only the last k layer groups (None: all).
        head_lr_scale: the new head's learning rate relative to ``lr``.
        patience: early-stopping patience in epochs on the validation split.
        freeze_bn: keep BatchNorm statistics frozen (None: frozen for pretrained backbones).
        grad_accum: batches per optimizer step.
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it natively).
        probe_c: inverse L2 strength of the linear probe (None: chosen by cross-validation).
        seed: seed for initialisation, shuffling and augmentation.
        progress: show progress bars.
        use_cache: reuse cached backbone features.
        regularizers: names of registered fine-tuning regularisers (``l2sp``, ``bss``).
        l2sp_alpha: L2-SP pull of backbone weights towards their pretrained values.
        l2sp_beta: plain L2 on the new head under L2-SP.
        bss_eta: weight of batch spectral shrinkage.
        bss_k: number of smallest singular values of the batch features that BSS shrinks.
        contrastive_weight: weight of the contrastive term (``supcon`` or ``cosine_pairs`` regulariser).
        supcon_temperature: temperature of the supervised contrastive term.
        contrastive_loss: the regulariser that the ``contrastive`` strategy tunes the backbone with
            (``supcon`` or ``cosine_pairs``).
        contrastive_ce: in the ``contrastive`` strategy, the head's cross-entropy tunes the backbone too
            (False: the backbone learns from the contrastive term alone, as in SetFit; the head is refitted
            as a linear probe afterwards either way).
        unfreeze_every: epochs between two unfreezing steps of ``gradual``.
        checkpoint_dir: folder where strategies that train with the loop keep checkpoints (None: none).
        checkpoint_every: also checkpoint every this many optimizer steps (None: only by time).
        resume: continue from the checkpoint in ``checkpoint_dir`` when there is one.
    """

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    layer_decay: float | None = None
    train_last_k: int | None = None
    head_lr_scale: float = 10.0
    patience: int | None = 3
    freeze_bn: bool | None = None
    grad_accum: int = 1
    mixed_precision: str = "no"
    probe_c: float | None = None
    seed: int = 0
    progress: bool = True
    use_cache: bool = True
    regularizers: tuple[str, ...] = ()
    l2sp_alpha: float = 0.01
    l2sp_beta: float = 0.01
    bss_eta: float = 0.001
    bss_k: int = 1
    contrastive_weight: float = 1.0
    supcon_temperature: float = 0.1
    contrastive_loss: str = "supcon"
    contrastive_ce: bool = True
    unfreeze_every: int = 1
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False

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
    train_ids: Sequence[Any]
    classes: list[str]
    val: Samples | None = None
    val_ids: Sequence[Any] | None = None
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


StrategyFn = Callable[[TransferModel, FitData, FitConfig], StrategyOutcome]


@dataclass(frozen=True)
class StrategyEntry:
    """One registered strategy.

    Attributes:
        name: what ``--strategy`` and ``TransferClassifier(strategy=...)`` call it.
        fn: fits the model in place, ``fn(model, data, config) -> StrategyOutcome``.
        description: one line for ``transferkit strategies``.
        uses_validation: the strategy uses the validation split (early stopping), so one is held out.
    """

    name: str
    fn: StrategyFn
    description: str
    uses_validation: bool = True


STRATEGIES: Registry[StrategyEntry] = Registry("strategy", StrategyEntry, hint="see `transferkit strategies`")
"""Strategies by name; ``@STRATEGIES.register("name", description=...)`` adds one."""
