"""Learning-rate range test: a learning rate to fine-tune at, from one short run over rising rates.

Leslie Smith's test ("Cyclical Learning Rates for Training Neural Networks", 2017, section 3.3):
train a copy of the model for about 100 steps while the learning rate rises exponentially from
``1e-7`` to ``1``, record the training loss, and stop once the loss diverges. The curve is flat
while the rate is too small to matter, falls where training makes progress, and rises where the
rate is too large.

Why the reading here differs from fastai's and Lightning's (whose suggestions users report as
erratic, e.g. fastai issue #3658):

* **No lag.** Both smooth the loss with a causal exponential average (``beta = 0.98``), whose
  delay of about 49 steps moves every feature of a 100-step curve by about three decades of
  learning rate to the right. The whole curve is known when the rule runs, so this module smooths
  it with a centred, Gaussian-weighted local linear fit in ``log10(lr)``: no delay, and slopes come
  from the same fit. The window's width is chosen by leave-one-out error, so a noisy curve (small
  batches) is smoothed more than a clean one.
* **Loss paired with the rate that produced it.** The loss of batch ``t + 1`` is measured after
  the update at ``lrs[t]``, so it is recorded against ``lrs[t]``, not against the next rate.
* **Levels, not derivatives.** The usual "steepest slope" rule differentiates a noisy curve and
  jumps between noise dips, often decades apart from run to run. This module reads the *descent
  midpoint* instead: the rate at which the smoothed loss is halfway from its starting plateau down
  to its minimum. For an S-shaped descent that is the steepest point, but a level crossing moves
  far less under noise than a slope does (the steepest slope is still reported, in ``candidates``).
* **Two readings, each bounding the other.** The descent midpoint says where training starts to
  make fast progress but not how close that is to instability; the minimum-loss rate divided by
  ten (fastai's ``lr_min``) keeps a margin below the blow-up but wanders along a flat-bottomed
  minimum. The suggestion is their geometric mean: when they agree it is both, and when one is off
  by a factor ``k`` the suggestion is off by only ``sqrt(k)``. When they are more than 30x apart
  the result says so (``notes``, and a ``LRFinderWarning``): the curve has no single clear descent
  and the suggestion is only a place to centre a sweep.

The suggestion is always strictly below the rate of the loss minimum, hence below the divergence
point, and never below the first tested rate. ``benchmarks/lr_finder.py`` checks it against a
real sweep of fine-tuning runs.

Example:
    >>> from transferkit.lr_finder import find_lr
    >>> result = find_lr(texts, labels, backbone="minilm", backbone_options={"max_length": 64})
    >>> result.suggestion  # use as TransferClassifier(strategy="finetune", lr=...)
    >>> result.plot("lr_find.png")
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from transferkit.errors import ConfigError, DataError
from transferkit.train import CombinedHooks, LoopConfig, TrainHooks, train_loop

# The rule's constants, fixed before looking at any benchmark: a factor of ten below the minimum
# is fastai's margin (``lr_min``); two rules more than 30x (1.5 decades) apart describe different
# curves, not noise around one.
MIN_DIVISOR = 10.0
DISAGREEMENT = 30.0
# The early stop watches a causal average (it must decide as the run goes); 0.9 forgets in about
# ten steps, enough to ignore one bad batch, quick enough to stop before the loss explodes.
STOP_BETA = 0.9
# Strategies whose parameter groups the range test reproduces.
RANGE_TEST_STRATEGIES = ("finetune", "partial")

ParamGroupsFn = Callable[[nn.Module], list[dict[str, Any]]]
OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


class LRFinderWarning(UserWarning):
    """The range test ran, but its curve is weak evidence (see ``LRFinderResult.notes``)."""


@dataclass
class LRFinderConfig:
    """How to run and read the range test.

    Attributes:
        start_lr: first learning rate of the ramp.
        end_lr: last learning rate of the ramp (reached only if the loss never diverges).
        num_steps: optimizer steps of the ramp.
        max_epochs: at most this many passes over the loader (the ramp is compressed into them);
            None cycles the loader until ``num_steps``, as fastai and Lightning do. With small data
            one pass leaves few points on the curve, so the default cycles.
        diverge_factor: stop once the (causally) smoothed loss exceeds this multiple of its best.
        bandwidth: width (standard deviation, in decades of learning rate) of the Gaussian window
            that smooths the curve; None chooses it from the curve by leave-one-out error.
        max_grad_norm: clip gradients to this norm, as the training loop does (None: no clipping).
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (see ``train.resolve_precision``).
    """

    start_lr: float = 1e-7
    end_lr: float = 1.0
    num_steps: int = 100
    max_epochs: float | None = None
    diverge_factor: float = 4.0
    bandwidth: float | None = None
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"

    def check(self) -> None:
        """Raises ConfigError on a range or setting that cannot work."""
        if not 0 < self.start_lr < self.end_lr:
            raise ConfigError(f"need 0 < start_lr < end_lr, got start_lr={self.start_lr} end_lr={self.end_lr}")
        if self.num_steps < 3:
            raise ConfigError(f"num_steps must be at least 3, not {self.num_steps}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ConfigError(f"max_epochs must be positive, not {self.max_epochs}")
        if self.diverge_factor <= 1:
            raise ConfigError(f"diverge_factor must be above 1, not {self.diverge_factor}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ConfigError(f"bandwidth must be positive, not {self.bandwidth}")


@dataclass
class LRFinderResult:
    """The curve of a range test and the learning rate it suggests.

    Attributes:
        lrs: learning rate of each optimizer step (the base rate; parameter groups scale it), rising.
        losses: training loss after the step at ``lrs[i]`` (measured on the next batch).
        smoothed: ``losses`` smoothed without lag (see the module docstring).
        bandwidth: width of the smoothing window, in decades of learning rate.
        initial_loss: loss of the first batch, before any step.
        suggestion: the suggested base learning rate.
        rule: how ``suggestion`` was chosen, in words, with the numbers.
        candidates: the rates behind the rule: ``steepest`` (None if the loss never fell),
            ``min_loss`` and ``min_loss_over_10``.
        diverged: the test stopped because the loss diverged (or became NaN/inf).
        notes: reasons to trust the suggestion less (also issued as ``LRFinderWarning``).
        info: what was tested (backbone, strategy, batch size, ...), for reports.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    bandwidth: float
    initial_loss: float
    suggestion: float
    rule: str
    candidates: dict[str, float | None]
    diverged: bool
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """The curve, smoothed curve and suggested rate as a PNG (``report.lr_finder.range_test_plot``); the path."""
        from transferkit.report.lr_finder import range_test_plot

        return range_test_plot(self, path, title=title)


def lr_ramp(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` learning rates rising geometrically from ``start_lr`` to ``end_lr``."""
    return np.geomspace(start_lr, end_lr, num_steps)


def causal_smooth(losses: np.ndarray, beta: float = STOP_BETA) -> np.ndarray:
    """Bias-corrected exponential moving average, as the early stop sees the loss."""
    out = np.empty(len(losses))
    average = 0.0
    for i, value in enumerate(losses):
        average = beta * average + (1 - beta) * value
        out[i] = average / (1 - beta ** (i + 1))
    return out


def local_linear_smooth(x: np.ndarray, y: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-weighted local linear fit of ``y`` on ``x`` at every ``x``: ``(values, slopes, leverages)``.

    Centred, so features do not shift; linear, so the ends are not biased towards the interior.
    ``leverages[i]`` is the weight of ``y[i]`` in its own fitted value (for leave-one-out errors).
    """
    diff = x[None, :] - x[:, None]  # (N, N): x_j - x_i
    w = np.exp(-0.5 * (diff / bandwidth) ** 2)
    s0, s1, s2 = w.sum(1), (w * diff).sum(1), (w * diff**2).sum(1)
    t0, t1 = (w * y[None, :]).sum(1), (w * diff * y[None, :]).sum(1)
    det = s0 * s2 - s1**2
    flat = det <= 1e-12 * s0**2  # a lone point: no slope to fit
    safe = np.where(flat, 1.0, det)
    values = np.where(flat, t0 / s0, (s2 * t0 - s1 * t1) / safe)
    slopes = np.where(flat, 0.0, (s0 * t1 - s1 * t0) / safe)
    leverages = np.where(flat, 1 / s0, s2 / safe)
    return values, slopes, leverages


def choose_bandwidth(x: np.ndarray, y: np.ndarray, *, smallest: float) -> float:
    """The window width (in units of ``x``) with the least leave-one-out error of the local linear fit.

    Every step's loss is measured on a different batch, so the noise is independent from step to step
    and leave-one-out error measures how well a width separates the curve from that noise.
    """
    widths = np.geomspace(max(smallest, 0.05), max(smallest, 1.0), 16)
    errors = []
    for width in widths:
        values, _, leverages = local_linear_smooth(x, y, float(width))
        residuals = (y - values) / np.clip(1 - leverages, 1e-6, None)
        errors.append(float(np.mean(residuals**2)))
    return float(widths[int(np.argmin(errors))])


@dataclass
class CurveReading:
    """What ``read_curve`` makes of a curve; the fields mean what they mean on ``LRFinderResult``."""

    smoothed: np.ndarray
    bandwidth: float
    suggestion: float
    rule: str
    candidates: dict[str, float | None]
    notes: list[str]


def read_curve(lrs: np.ndarray | list[float], losses: np.ndarray | list[float], *,
               bandwidth: float | None = None, diverge_factor: float = 4.0) -> CurveReading:
    """Smooth a range-test curve and choose a learning rate from it (the rule is in the module docstring).

    Args:
        lrs: rising learning rates, one per step.
        losses: the loss after each step; NaN/inf count as divergence.
        bandwidth: Gaussian window width in decades (at least 1.5 steps of the ramp); None chooses it
            by leave-one-out error, so that noisier curves are smoothed more.
        diverge_factor: losses above this multiple of the best smoothed loss are clipped to it, so
            that an exploding tail cannot drag the smoothed curve up before the divergence.

    Raises:
        DataError: fewer than two points, or rates that do not rise.
    """
    lrs = np.asarray(lrs, dtype=float)
    raw = np.asarray(losses, dtype=float)
    if len(lrs) < 2 or len(lrs) != len(raw):
        raise DataError(f"a range-test curve needs at least two (lr, loss) points, got {len(lrs)} and {len(raw)}")
    if np.any(np.diff(lrs) <= 0):
        raise DataError("the learning rates of a range-test curve must rise")
    finite = np.isfinite(raw)
    if not finite.any():
        raise DataError("every loss of the range test was NaN or infinite; the start learning rate is too high "
                        "or the data is broken")
    cap = diverge_factor * causal_smooth(raw[finite]).min()
    clipped = np.minimum(np.where(finite, raw, cap), cap)
    x = np.log10(lrs)
    smallest = 1.5 * float(np.median(np.diff(x)))  # narrower windows hold about one point
    width = choose_bandwidth(x, clipped, smallest=smallest) if bandwidth is None else max(bandwidth, smallest)
    values, slopes, _ = local_linear_smooth(x, clipped, width)

    notes: list[str] = []
    i_min = int(np.argmin(values))
    lr_min = float(lrs[i_min])
    min_over = max(lr_min / MIN_DIVISOR, float(lrs[1]))
    # the loss where the rates are still too small to matter: a median, so one odd batch does not move it
    start = float(np.median(clipped[: max(1, min(max(3, len(lrs) // 10), i_min))]))
    drop = (start - values[i_min]) / max(abs(start), 1e-12)
    midpoint = _descent_midpoint(x, values, start, i_min) if i_min > 0 and drop > 0 else None
    before_min = np.arange(1, i_min)  # the first point's window is one-sided
    steepest = None
    if len(before_min) and slopes[before_min].min() < 0:
        steepest = float(lrs[before_min[np.argmin(slopes[before_min])]])
    candidates: dict[str, float | None] = {"descent_midpoint": midpoint, "min_loss": lr_min,
                                           "min_loss_over_10": lr_min / MIN_DIVISOR, "steepest": steepest}
    if i_min == 0:
        suggestion = float(lrs[0])
        rule = "the loss never fell below its value at the first rate: the first tested rate"
        notes.append(f"the loss never fell; every rate from {lrs[0]:.2g} up made it worse. Lower start_lr, or "
                     "check that the model is not already fitted")
    elif midpoint is None:
        suggestion = min_over
        rule = f"minimum-loss rate {lr_min:.3g} / {MIN_DIVISOR:g} (the smoothed loss has no descent before it)"
    else:
        suggestion = math.sqrt(midpoint * min_over)
        rule = (f"geometric mean of the descent midpoint ({midpoint:.3g}, where the smoothed loss is halfway "
                f"from {start:.3g} down to its minimum {values[i_min]:.3g}) and the minimum-loss rate / "
                f"{MIN_DIVISOR:g} ({lr_min:.3g} / {MIN_DIVISOR:g})")
        spread = max(midpoint, min_over) / min(midpoint, min_over)
        if spread > DISAGREEMENT:
            notes.append(f"the descent midpoint ({midpoint:.2g}) and the minimum-loss rate / 10 ({min_over:.2g}) "
                         f"are {spread:.0f}x apart: the curve has no single clear descent. Sweep a few rates "
                         "around the suggestion")
        if midpoint <= lrs[1]:
            notes.append(f"the loss was already falling at the first rate ({lrs[0]:.2g}); lower start_lr")
    if i_min > 0:
        suggestion = float(np.clip(suggestion, lrs[1], lrs[i_min]))
        if drop < 0.05:
            notes.append(f"the smoothed loss fell by only {100 * max(drop, 0.0):.1f}% over the range; the curve says "
                         "little (too few steps, too noisy, or a loss that is already low)")
    if i_min == len(lrs) - 1:
        notes.append(f"the loss was still falling at the last rate ({lrs[-1]:.2g}); raise end_lr to see the minimum")
    if len(lrs) < 40:
        notes.append(f"only {len(lrs)} points on the curve; more steps (or smaller batches) give a steadier reading")
    return CurveReading(smoothed=values, bandwidth=width, suggestion=suggestion, rule=rule, candidates=candidates,
                        notes=notes)


def _descent_midpoint(x: np.ndarray, values: np.ndarray, start: float, i_min: int) -> float:
    """The rate where ``values`` last crosses halfway from ``start`` down to ``values[i_min]`` before
    ``i_min``, interpolated in ``x = log10(lr)``. For an S-shaped descent this is its steepest point,
    but it is read from levels, which noise moves far less than it moves slopes."""
    level = (start + values[i_min]) / 2
    above = np.flatnonzero(values[:i_min] >= level)
    if not len(above):  # below halfway from the first point on: the descent began before the range
        return float(10 ** x[0])
    j = int(above[-1])
    t = (values[j] - level) / max(values[j] - values[j + 1], 1e-12)
    return float(10 ** (x[j] + t * (x[j + 1] - x[j])))


class RangeTestRecorder(TrainHooks):
    """The range test as a hook on the training loop: records the loss of batch ``t + 1`` against the rate
    ``ramp[t]`` of the update before it (batch 0's is ``initial_loss``); stops on divergence or at the ramp's end.
    """

    def __init__(self, ramp: np.ndarray, diverge_factor: float) -> None:
        self.ramp, self.diverge_factor = ramp, diverge_factor
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.initial_loss, self.diverged = math.nan, False
        self.average, self.best, self.step = 0.0, math.inf, 0

    def should_stop(self, loss: float) -> bool:
        step, self.step = self.step, self.step + 1
        if step == 0:
            if not math.isfinite(loss):
                raise DataError(f"the loss was {loss} before any training step; check the data and the model")
            self.initial_loss = loss
            return False
        self.lrs.append(float(self.ramp[step - 1]))
        self.losses.append(loss)
        self.diverged = not math.isfinite(loss)
        if not self.diverged:
            self.average = STOP_BETA * self.average + (1 - STOP_BETA) * loss
            smoothed = self.average / (1 - STOP_BETA**step)  # the early stop's causal average
            self.best = min(self.best, smoothed)
            self.diverged = smoothed > self.diverge_factor * self.best
        return self.diverged or step == len(self.ramp)


def suggest_lr(model: nn.Module, train_loader: DataLoader, *, param_groups: ParamGroupsFn | None = None,
               optimizer: OptimizerFactory | None = None, hooks: TrainHooks | None = None,
               config: LRFinderConfig | None = None, seed: int = 0) -> LRFinderResult:
    """Run the range test on a copy of ``model`` and suggest a learning rate.

    The test is ``train.train_loop`` with the base rate rising geometrically at each step and a
    ``RangeTestRecorder`` hook, on a deep copy (the model's memory twice, briefly) under a forked random
    state: the caller's model, its ``requires_grad`` flags and torch's random state are left as they were.
    Batches and loss follow the loop (``model(**batch_dict) -> logits (B, C)``, cross-entropy plus the
    hooks' terms); a loader shorter than the ramp is passed over again (a new epoch).

    Args:
        model: the model to probe (not modified).
        train_loader: training batches (a sized loader).
        param_groups: builds the optimizer's groups from the copy; each group's ``lr`` is its scale
            relative to the base rate (e.g. ``layerwise_param_groups(m, lr=1.0, ...)``). None: one group
            of every parameter that requires grad, at scale 1.
        optimizer: builds the optimizer from the groups (default ``torch.optim.AdamW``).
        hooks: the loop's hooks (``train_mode``, ``extra_loss``, ...), applied as in training.
        config: the ramp, the early stop and the smoothing.
        seed: seeds dropout and anything else random during the test.

    Returns:
        The curve, the suggested base rate and the rule that chose it.

    Raises:
        ConfigError: a bad ramp, or no parameter to train.
        DataError: an empty loader, or a loss that was NaN from the first step.

    Example:
        >>> result = suggest_lr(model, loader, param_groups=lambda m: [{"params": m.parameters(), "lr": 1.0}])
        >>> result.suggestion, result.rule
    """
    config = config or LRFinderConfig()
    config.check()
    batches_per_epoch = len(train_loader)
    if batches_per_epoch == 0:
        raise DataError("the training loader yields no batches")
    steps = config.num_steps
    if config.max_epochs is not None:
        # one batch more than steps: the loss after the last step is read on it
        steps = min(steps, max(2, math.floor(config.max_epochs * batches_per_epoch) - 1))
    ramp = lr_ramp(config.start_lr, config.end_lr, steps)
    recorder = RangeTestRecorder(ramp, config.diverge_factor)
    loop = LoopConfig(epochs=math.ceil((steps + 1) / batches_per_epoch), patience=None,
                      mixed_precision=config.mixed_precision, max_grad_norm=config.max_grad_norm, progress=False)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        work = copy.deepcopy(model)
        made = param_groups(work) if param_groups is not None else [{"params": work.parameters()}]
        # each group's rate is its scale of the base rate (1 if unset); lists, as generators would be spent
        listed = [{"lr": 1.0, **g, "params": [p for p in g["params"] if p.requires_grad]} for g in made]
        groups = [g for g in listed if g["params"]]
        if not groups:
            raise ConfigError("the range test found no parameter to train (every parameter is frozen)")
        opt = (optimizer or torch.optim.AdamW)(groups)
        schedule = LambdaLR(opt, lambda step: float(ramp[min(step, steps - 1)]))
        train_loop(work, opt, schedule, train_loader, None, loop, CombinedHooks([hooks or TrainHooks(), recorder]))
    lrs, losses = recorder.lrs, recorder.losses
    if len(lrs) < 2:
        raise DataError(f"the range test ran only {len(lrs)} step(s); the loader is too short or the loss diverged "
                        f"at once (start_lr={config.start_lr})")
    reading = read_curve(lrs, losses, bandwidth=config.bandwidth, diverge_factor=config.diverge_factor)
    for note in reading.notes:
        warnings.warn(note, LRFinderWarning, stacklevel=2)
    return LRFinderResult(lrs=lrs, losses=losses, smoothed=reading.smoothed.tolist(),
                          bandwidth=reading.bandwidth, initial_loss=recorder.initial_loss,
                          suggestion=reading.suggestion, rule=reading.rule, candidates=reading.candidates,
                          diverged=recorder.diverged, notes=reading.notes,
                          info={"config": asdict(config), "seed": seed})


def find_lr(X: Any, y: Any = None, *, backbone: str, strategy: str = "finetune", pretrained: bool = True,
            backbone_options: dict[str, Any] | None = None, batch_size: int = 32, layer_decay: float | None = None,
            train_last_k: int | None = None, head_lr_scale: float | None = None, weight_decay: float | None = None,
            freeze_bn: bool | None = None, modality: str | None = None, seed: int = 0,
            config: LRFinderConfig | None = None) -> LRFinderResult:
    """Range test for fine-tuning ``backbone`` on raw data; the suggestion is ``TransferClassifier``'s ``lr``.

    Builds the backbone and a new linear head as ``TransferClassifier.fit`` does, and the parameter
    groups as the ``finetune``/``partial`` strategies do (layer-wise rates, the head at
    ``head_lr_scale`` times the base rate, frozen BatchNorm statistics for pretrained backbones,
    gradient clipping), then ramps the base rate. Arguments mean what they mean for
    ``TransferClassifier``; None picks the strategy's default.

    Args:
        X: images, texts, waveforms or file paths, or a ``Samples`` (then ``y`` is unused).
        y: one label per item.
        backbone: a registered name, ``timm:NAME``, ``hf:NAME_OR_PATH`` or a local directory.
        strategy: ``finetune`` or ``partial`` (the strategies whose optimizer the test reproduces).
        config: the ramp, the early stop and the smoothing.

    Raises:
        DataError: unusable data (no labels, one class, a modality the backbone does not take).
        ConfigError: a strategy the range test does not reproduce, or a bad option.
        BackboneError: unknown backbone.

    Example:
        >>> result = find_lr(images, labels, backbone="efficientnet_lite0", batch_size=16)
        >>> TransferClassifier("efficientnet_lite0", "finetune", lr=result.suggestion).fit(images, labels)
    """
    from transferkit.backbones import BackboneSpec
    from transferkit.data import Samples, samples_from_arrays
    from transferkit.features import make_loader
    from transferkit.heads import TransferModel
    from transferkit.model import build_model
    from transferkit.strategies import STRATEGIES, FitConfig
    from transferkit.strategies.run import (
        FrozenBatchNormHooks,
        default_freeze_bn,
        default_layer_decay,
        layerwise_param_groups,
    )
    from transferkit.tasks import Classification

    STRATEGIES.get(strategy)  # an unknown name gets the registry's error
    if strategy not in RANGE_TEST_STRATEGIES:
        raise ConfigError(f"the range test reproduces the optimizer of {' and '.join(RANGE_TEST_STRATEGIES)}, "
                          f"not {strategy!r}; run it with --strategy finetune and adapt the rate")
    samples = X if isinstance(X, Samples) else samples_from_arrays(X, y, modality=modality)
    if samples.labels is None:
        raise DataError("the range test needs labels: pass y, or a labelled dataset")
    classes = sorted(set(samples.labels))
    if len(classes) < 2:
        raise DataError(f"found only one class {classes[0]!r}; need at least two to classify")
    torch.manual_seed(seed)
    spec = BackboneSpec(backbone, pretrained=pretrained, options=dict(backbone_options or {}))
    model = build_model(spec, Classification(classes), modality=samples.modality)
    net = model.backbone
    if strategy == "partial" and train_last_k is None:
        train_last_k = min(2, len(net.layer_groups()))
    # the finetune strategy's defaults (strategies/finetune.py, fine_tune)
    layer_decay = default_layer_decay(layer_decay, pretrained=pretrained)
    head_scale = (head_lr_scale if head_lr_scale is not None else FitConfig.head_lr_scale) if pretrained else 1.0
    decay = weight_decay if weight_decay is not None else FitConfig.weight_decay
    freeze = default_freeze_bn(freeze_bn, pretrained=pretrained)
    index = {name: i for i, name in enumerate(classes)}
    loader = make_loader(samples, net, [index[v] for v in samples.labels], train=True, batch_size=batch_size,
                         seed=seed)

    def groups(copy_of_model: nn.Module) -> list[dict[str, Any]]:
        assert isinstance(copy_of_model, TransferModel)
        return layerwise_param_groups(copy_of_model, lr=1.0, layer_decay=layer_decay, train_last_k=train_last_k,
                                      head_lr_scale=head_scale, weight_decay=decay)

    result = suggest_lr(model, loader, param_groups=groups, hooks=FrozenBatchNormHooks() if freeze else None,
                        config=config, seed=seed)
    result.info.update({"backbone": backbone, "strategy": strategy, "pretrained": pretrained,
                        "backbone_options": dict(backbone_options or {}), "batch_size": batch_size,
                        "layer_decay": layer_decay, "train_last_k": train_last_k, "head_lr_scale": head_scale,
                        "weight_decay": decay, "freeze_bn": freeze, "n_samples": len(samples),
                        "classes": classes})
    return result
