"""The automatic default of ``fit``: backbone, strategy and learning rate chosen on validation data.

``transferkit fit DATA`` without ``--strategy`` comes here. In order:

1. **backbone**: the one given, else the installed zoo backbone of the data's modality with the best
   transferability score (``select.rank_backbones``, LogME) on the training data. Ranking extracts each
   candidate's features once through the feature cache, so the probe below reads them back for free.
   Without a budget the choice stays cheap: only candidates whose forward pass costs at most ``COST_RATIO``
   times the modality default's (``BackboneEntry.gflops``) are ranked, so the whole choice takes a few
   probes' time; ``--budget`` ranks every installed candidate.
2. **the linear probe**, fitted on the training split and scored on the validation split: the floor.
3. **LP-FT**, when its estimated cost fits the time left (the cost of a forward pass is measured on one
   batch), in one of two forms:

   * the whole backbone, with a learning rate from the range test (``lr_finder``) on the training split;
   * else, for a backbone that can be cut between its layers (``Backbone.split_top``: BERT-style text
     encoders, Whisper), only its top half (``TOP_FRACTION`` of its layer groups), on the kept outputs of
     the frozen layers (``cache_frozen``), which run once: an epoch costs about half a full one. Its
     rate is LP-FT's default: the range test would run the whole backbone.

   The epochs come from the time left (at most ``MAX_EPOCHS``). LP-FT is kept only when its validation
   score beats the probe's; otherwise the probe stays.

The time: ``--budget 10m`` gives it. Without one, the whole choice may take ``AUTO_TIME_RATIO`` times what
the probe took (the chosen backbone's extraction plus the probe's fit), so only the cut form fits. The
winner is refitted as ``fit`` would fit it (the probe on all of DATA; LP-FT keeps its run, whose
best epoch the validation split picked). ``AutoChoice`` records every step and why; ``fit`` writes it
as ``choices.json`` into the run directory.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from transferkit.auto.budget import Budget
from transferkit.data import Samples

CHOICES_FILE = "choices.json"
MAX_EPOCHS = 5
MIN_EPOCHS = 2
# a training step costs about this many forward passes (forward, backward, optimizer), measured on CNNs and BERTs
TRAIN_COST = 3.0
RANGE_TEST_STEPS = 40
# the range test's suggestion may run at most this fraction of the budget left when it is read
SAFETY = 0.8
# without a budget, a candidate backbone is ranked only if its forward pass costs at most this many times the
# modality default's: the ranking extracts every candidate's features, so the dearest candidates set its time
COST_RATIO = 2.0
# a training step of a cut backbone's top on kept outputs costs this many forward passes of a batch of median size:
# measured on SST-2 with MiniLM's top half (10.1 s an epoch against 2.2 ms a sample in that batch); more than
# TRAIN_COST, since the grouped batches' forward timing leaves out dropout, autograd and the loop's own work
TOP_TRAIN_COST = 4.5
# without a budget, the whole choice may take this many times what the plain probe took
AUTO_TIME_RATIO = 3.0
# LP-FT on a cut backbone trains this share of its layer groups after the stem (rounded up, at least one): on
# SST-2 training sentences held out from the 2,000 (never dev), the top half of MiniLM scored 0.861-0.867, the top
# third 0.858-0.860
TOP_FRACTION = 1 / 2


@dataclass
class AutoChoice:
    """What the automatic default chose and why, as written to ``choices.json``.

    Attributes:
        backbone: the chosen backbone and how (``given`` or the ranking's score per candidate).
        strategy: the chosen strategy.
        candidates: each strategy tried, with its validation score and seconds.
        lr: the learning rate of the trained candidate and the range test's reading (None: none trained).
        reasons: the decisions in words, in order.
        validation: the validation data the candidates were compared on.
        budget_seconds: the budget (None: none given); spent_seconds: what the choice took.
        time_limit_seconds: the time the choice was given: the budget, or without one ``AUTO_TIME_RATIO``
            times the probe's seconds.
    """

    backbone: dict[str, Any] = field(default_factory=dict)
    strategy: str = "linear_probe"
    candidates: list[dict[str, Any]] = field(default_factory=list)
    lr: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    budget_seconds: float | None = None
    spent_seconds: float = 0.0
    time_limit_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_fit(template: Any, samples: Samples, *, budget: float | None = None, choose_backbone: bool = True,
             eval_set: Samples | None = None, resume: bool = False,
             keep_checkpoints: bool = False) -> tuple[Any, AutoChoice]:
    """Choose and fit: the fitted estimator and the record of the choice.

    Args:
        template: a ``TransferEstimator`` holding the user's settings (task, batch size, seed, val_fraction,
            checkpoints ...); its ``strategy`` is ignored, its ``backbone`` kept unless ``choose_backbone``.
        samples: the labelled training data.
        budget: seconds the whole choice may take (None: ``AUTO_TIME_RATIO`` times the probe's time).
        choose_backbone: rank the installed zoo backbones of the data's modality.
        eval_set: labelled validation data instead of a split of ``samples``.
    """
    from transferkit.tasks import make_task

    clock = Budget(budget)
    choice = AutoChoice(budget_seconds=budget)
    task = make_task(template._task_name())
    task.fit_targets(list(samples.labels or []), origins=samples.label_sources)
    backbone = _choose_backbone(template, samples, task, choose_backbone, choice, budgeted=budget is not None)
    base = clone(template).set_params(backbone=backbone, strategy="linear_probe")
    # the probe on all the labelled data, as `fit --strategy linear_probe` fits it (C by cross-validation); the
    # features are the ranking's, from the cache
    started = time.perf_counter()
    probe = clone(base).fit(samples, eval_set=None if eval_set is None else (eval_set, None))
    probe_cost = time.perf_counter() - started + float(choice.backbone.get("extract_seconds", 0.0))
    if budget is None:
        clock.seconds = AUTO_TIME_RATIO * probe_cost
        choice.reasons.append(f"no --budget: the choice may take {AUTO_TIME_RATIO:g}x the probe's {probe_cost:.0f}s "
                              f"(give one, e.g. --budget 10m, to let LP-FT train the whole backbone)")
    choice.time_limit_seconds = clock.seconds
    train, val, split = _validation(base, samples, task, eval_set, choice)
    if val is None:
        choice.reasons.append("too few samples to hold out validation data: the linear probe, without comparison")
        return _finish(probe, choice, clock)
    probe_score, probe_seconds = _probe_score(probe, samples, split, val, probe.task_)
    choice.candidates.append({"strategy": "linear_probe", "val_score": probe_score, "seconds": probe_seconds})
    choice.reasons.append(f"linear probe: validation {task.score_name} {probe_score:.4f} (fitted on the rest)")
    tuned = _try_lp_ft(base, train, val, task, clock, choice, probe_rate=probe_cost / len(samples),
                       backbone=probe.model_.backbone, budgeted=budget is not None, resume=resume,
                       keep_checkpoints=keep_checkpoints)
    if tuned is not None and tuned[1] > probe_score:
        choice.reasons.append(f"kept LP-FT: validation {task.score_name} {tuned[1]:.4f} > probe {probe_score:.4f}")
        return _finish(tuned[0], choice, clock)
    if tuned is not None:
        choice.reasons.append(f"kept the linear probe: LP-FT's validation {task.score_name} {tuned[1]:.4f} is not "
                              f"above the probe's {probe_score:.4f}")
    return _finish(probe, choice, clock)


def _finish(estimator: Any, choice: AutoChoice, clock: Budget) -> tuple[Any, AutoChoice]:
    """The winner, with the choice's time and a pointer to its record in the strategy info (and the manifest)."""
    choice.strategy = estimator.strategy
    choice.spent_seconds = clock.spent()
    estimator.strategy_info_ = {**estimator.strategy_info_, "auto": {"strategy": choice.strategy,
                                                                      "choices_file": CHOICES_FILE}}
    return estimator, choice


def _choose_backbone(template: Any, samples: Samples, task: Any, choose: bool, choice: AutoChoice, *,
                     budgeted: bool = True) -> str:
    """The given backbone, or the best installed zoo backbone of the modality by LogME on the training data
    (without a budget, among the candidates that cost at most ``COST_RATIO`` times the default)."""
    from transferkit.backbones.zoo import DEFAULT_BACKBONE
    from transferkit.select import DEFAULT_SCORE, rank_backbones
    from transferkit.select.rank import offline_candidates

    if not choose:
        choice.backbone = {"chosen": template.backbone, "by": "given"}
        choice.reasons.append(f"backbone {template.backbone}: given")
        return template.backbone
    default = DEFAULT_BACKBONE[samples.modality]
    candidates, dear = offline_candidates(samples.modality), {}
    if not budgeted:
        candidates, dear = affordable(candidates, default)
        if dear:
            choice.reasons.append(f"not ranked without --budget, each over {COST_RATIO:g}x the forward-pass cost of "
                                  f"{default}: {', '.join(f'{n} ({r:.1f}x)' for n, r in dear.items())}")
    if task.name != "classification" or len(candidates) < 2:
        why = (f"transferability scores rank classes, not {task.name} targets" if len(candidates) >= 2
               else "the only candidate within the cost ratio without --budget" if dear
               else "only one installed zoo backbone of the modality")
        choice.backbone = {"chosen": default, "by": "default", "why": why, "not_ranked": dear}
        choice.reasons.append(f"backbone {default}: the modality's default ({why})")
        return default
    ranking = rank_backbones(samples, candidates, (DEFAULT_SCORE,), backbone_options=template.backbone_options,
                             batch_size=template.batch_size, progress=template.progress)
    scores = {row.candidate: row.scores[DEFAULT_SCORE] for row in ranking.rows}
    chosen = next(row for row in ranking.rows if row.candidate == ranking.best)
    choice.backbone = {"chosen": ranking.best, "by": DEFAULT_SCORE, "scores": scores,
                       "seconds": ranking.seconds, "not_ranked": dear, "extract_seconds": chosen.extract_seconds}
    shown = ", ".join(f"{name} {value:.3f}" for name, value in scores.items() if value is not None)
    choice.reasons.append(f"backbone {ranking.best}: best {DEFAULT_SCORE} on the training data ({shown})")
    return ranking.best


def affordable(candidates: list[str], default: str) -> tuple[list[str], dict[str, float]]:
    """``candidates`` split into those whose forward pass costs at most ``COST_RATIO`` times ``default``'s (by the
    zoo's ``gflops``; an unknown cost is kept) and the others, with their cost ratio."""
    from transferkit.backbones import BACKBONES

    base = BACKBONES.get(default).gflops
    kept, dear = [], {}
    for name in candidates:
        cost = BACKBONES.get(name).gflops
        if base and cost and cost > COST_RATIO * base:
            dear[name] = cost / base
        else:
            kept.append(name)
    return kept, dear


def _validation(estimator: Any, samples: Samples, task: Any, eval_set: Samples | None,
                choice: AutoChoice) -> tuple[Samples, Samples | None, np.ndarray | None]:
    """The training samples, the validation samples the candidates are compared on, and (for a split of
    ``samples``) the validation indices."""
    if eval_set is not None:
        choice.validation = {"source": "--val", "size": len(eval_set), "score": task.score_name}
        return samples, eval_set, None
    fraction = estimator.val_fraction or 0.1
    train_idx, val_idx = task.split(list(samples.labels or []), fraction, estimator.seed)
    if len(val_idx) < 2 or len(train_idx) < 2:
        return samples, None, None
    choice.validation = {"source": f"a {fraction:g} split of DATA (seed {estimator.seed})", "size": len(val_idx),
                         "score": task.score_name}
    return samples.subset(train_idx), samples.subset(val_idx), val_idx


def _probe_score(probe: Any, samples: Samples, val_idx: np.ndarray | None, val: Samples,
                 task: Any) -> tuple[float, float]:
    """The validation score of the probe fitted on the training part only; ``(score, seconds)``.

    Read from the cached features of ``probe``'s backbone (no second extraction); a task whose probe does not
    fit one feature row per sample (word tags) fits a probe on the training part instead.
    """
    from transferkit.features import extract_features

    start = time.perf_counter()
    backbone, labels = probe.model_.backbone, list(samples.labels or [])
    targets = task.encode(labels)
    features, targets = task.probe_data(backbone, samples, targets, batch_size=probe.batch_size, use_cache=True,
                                        progress=False)
    if features.shape[0] != len(samples):
        keep = np.setdiff1d(np.arange(len(samples)), val_idx) if val_idx is not None else np.arange(len(samples))
        refit = clone(probe).set_params(progress=False, checkpoint_dir=None).fit(samples.subset(keep))
        return float(refit.score(val)), time.perf_counter() - start
    if val_idx is None:  # separate validation data
        fit_x, fit_y = features, targets
        val_x = extract_features(backbone, val, batch_size=probe.batch_size, progress=False)
        val_y = task.encode(list(val.labels or []), source="validation data")
    else:
        mask = np.zeros(len(samples), dtype=bool)
        mask[val_idx] = True
        fit_x, fit_y, val_x, val_y = features[~mask], targets[~mask], features[mask], targets[mask]
    c = (probe.strategy_params or {}).get("c")
    fitted = task.fit_probe(fit_x, fit_y, c=c, seed=probe.seed)
    outputs = val_x @ fitted.weight.T + fitted.bias
    score = task.score(torch.from_numpy(np.asarray(outputs, dtype=np.float32)), torch.from_numpy(np.asarray(val_y)))
    return float(score), time.perf_counter() - start


def _try_lp_ft(base: Any, train: Samples, val: Samples, task: Any, clock: Budget, choice: AutoChoice, *,
               probe_rate: float, backbone: Any, budgeted: bool, resume: bool,
               keep_checkpoints: bool) -> tuple[Any, float] | None:
    """LP-FT when the time left allows it (the whole backbone, else its top on kept outputs): ``(fitted estimator,
    validation score)``, else None (with the reason).

    The forward pass's cost per sample is timed on one batch, and is at most ``probe_rate``: the probe's seconds
    (its extraction, batched as extraction batches, and its fit) per sample. Without a budget the whole backbone
    is not tried: ``MIN_EPOCHS`` epochs of it cost ``MIN_EPOCHS * TRAIN_COST`` passes over the training data, more
    than ``AUTO_TIME_RATIO`` probes; and when ``backbone`` (the probe's) cannot be cut either, nothing is timed.
    """
    if task.name != "classification":
        choice.reasons.append(f"the range test fits classification heads; {task.name} keeps the probe")
        return None
    groups = len(backbone.layer_groups())
    top = max(1, math.ceil((groups - 1) * TOP_FRACTION))
    cuttable = groups >= 2 and backbone.split_top(top) is not None
    if not budgeted and not cuttable:
        choice.reasons.append(f"without --budget LP-FT trains only the top of a backbone that can be cut; "
                              f"{backbone.spec.name} cannot be, and the whole of it needs at least "
                              f"{MIN_EPOCHS * TRAIN_COST:g} passes over the data, more than {AUTO_TIME_RATIO:g} probes")
        choice.candidates.append({"strategy": "lp_ft", "skipped": "time"})
        return None
    batch_rate = _forward_seconds(backbone, train, batch_size=base.batch_size)
    forward = min(batch_rate, probe_rate)
    epoch = len(train) * forward * TRAIN_COST + len(val) * forward
    lr_given = base.lr is not None
    range_test = 0.0 if lr_given else RANGE_TEST_STEPS * base.batch_size * forward * TRAIN_COST
    epochs = _epochs(base, clock, epoch, range_test)
    estimate = {"forward_seconds_per_sample": forward, "batch_seconds_per_sample": batch_rate,
                "probe_seconds_per_sample": probe_rate, "epoch_seconds": epoch, "range_test_seconds": range_test,
                "left_seconds": clock.left()}
    if budgeted and epochs >= MIN_EPOCHS:
        lr, reading = (base.lr, {"given": base.lr}) if lr_given else _range_test(base, train)
        tuned = clone(base).set_params(strategy="lp_ft", lr=lr, epochs=epochs)
        why = f"{epochs} epochs fit the time left (about {epoch:.0f}s each), lr {lr:.2g} " \
              f"({'given' if lr_given else 'range test'})"
        choice.lr = {"chosen": lr, "range_test": reading}
        return _run_lp_ft(tuned, train, val, task, choice, why, estimate, resume=resume,
                          keep_checkpoints=keep_checkpoints)
    if not cuttable:
        choice.reasons.append(f"LP-FT does not fit the time left: {MIN_EPOCHS} epochs take about "
                              f"{MIN_EPOCHS * epoch + range_test:.0f}s, {clock.left():.0f}s are left")
        choice.candidates.append({"strategy": "lp_ft", "skipped": "time", **estimate})
        return None
    share = top / (groups - 1)  # of the forward pass, roughly: the layer groups after the stem cost alike
    once = (1 - share) * forward * (len(train) + len(val))
    # the top trains on batches grouped by length, which pad about as a batch of samples of median size pads
    grouped_rate = _forward_seconds(backbone, train, batch_size=base.batch_size, grouped=True)
    grouped = forward * min(1.0, grouped_rate / batch_rate)
    top_epoch = share * (len(train) * grouped * TOP_TRAIN_COST + len(val) * grouped)
    epochs = _epochs(base, clock, top_epoch, once)
    estimate = {**estimate, "train_last_k": top, "frozen_once_seconds": once, "epoch_seconds": top_epoch,
                "grouped_forward_seconds_per_sample": grouped}
    if epochs < MIN_EPOCHS:
        choice.reasons.append(f"LP-FT does not fit the time left, even on the top {top} of {groups} layer groups: "
                              f"{MIN_EPOCHS} epochs take about {once + MIN_EPOCHS * top_epoch:.0f}s, "
                              f"{clock.left():.0f}s are left")
        choice.candidates.append({"strategy": "lp_ft", "skipped": "time", **estimate})
        return None
    tuned = clone(base).set_params(strategy="lp_ft", epochs=epochs,
                                   strategy_params={**(base.strategy_params or {}), "train_last_k": top,
                                                    "cache_frozen": True})
    choice.lr = {"chosen": base.lr, "range_test": None}
    why = (f"the whole backbone does not fit the time left, its top {top} of {groups} layer groups does, on the "
           f"frozen layers' outputs kept once ({once:.0f}s), {epochs} epochs of about {top_epoch:.0f}s; lr "
           f"{'given' if lr_given else 'LP-FT default (the range test would run the whole backbone)'}")
    return _run_lp_ft(tuned, train, val, task, choice, why, estimate, resume=resume, keep_checkpoints=keep_checkpoints)


def _epochs(base: Any, clock: Budget, epoch: float, first: float) -> int:
    """The epochs of ``epoch`` seconds that fit after ``first`` seconds in the safe share of the time left."""
    epochs = min(MAX_EPOCHS, int(math.floor((clock.left() * SAFETY - first) / max(epoch, 1e-9))))
    return min(epochs, base.epochs) if base.epochs is not None else epochs


def _run_lp_ft(tuned: Any, train: Samples, val: Samples, task: Any, choice: AutoChoice, why: str,
               estimate: dict[str, Any], *, resume: bool, keep_checkpoints: bool) -> tuple[Any, float]:
    """Fit ``tuned`` (LP-FT) on ``train``, score it on ``val``, and record it."""
    start = time.perf_counter()
    tuned.fit(train, eval_set=(val, None), resume=resume, keep_checkpoints=keep_checkpoints)
    score = float(tuned.score(val))
    choice.candidates.append({"strategy": "lp_ft", "val_score": score, "seconds": time.perf_counter() - start,
                              "epochs": tuned.epochs, "lr": tuned.lr, **(tuned.strategy_params or {}), **estimate})
    choice.reasons.append(f"LP-FT: {why}; validation {task.score_name} {score:.4f}")
    return tuned, score


def _forward_seconds(backbone: Any, samples: Samples, *, batch_size: int, grouped: bool = False) -> float:
    """The seconds per sample of ``backbone``'s forward pass (the probe's, already loaded), timed on one batch
    (no cache).

    The batch is the first ``batch_size`` samples, padded as a shuffled batch pads; with ``grouped``, the
    samples of median size (text length, file size), as a batch grouped by length pads.
    """
    from transferkit.features import extract_features

    size = min(len(samples), batch_size)
    picked = list(range(size))
    if grouped:
        order = np.argsort([_size(item) for item in samples.items], kind="stable")
        first = max(0, min(len(samples) - size, len(samples) // 2 - size // 2))
        picked = [int(i) for i in order[first:first + size]]
    batch = samples.subset(picked)
    extract_features(backbone, batch.subset([0]), use_cache=False, progress=False)  # warm-up
    start = time.perf_counter()
    with torch.inference_mode():
        extract_features(backbone, batch, batch_size=batch_size, use_cache=False, progress=False)
    return (time.perf_counter() - start) / len(batch)


def _size(item: Any) -> int:
    """How long an item is, roughly: a text's characters, a file's bytes, an array's length."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, os.PathLike):
        try:
            return os.path.getsize(item)
        except OSError:
            return 0
    return len(item) if hasattr(item, "__len__") else 0


def _range_test(estimator: Any, train: Samples) -> tuple[float, dict[str, Any]]:
    """The range test's suggestion for fine-tuning on the training split, and how it was read."""
    from transferkit.lr_finder import LRFinderConfig, find_lr

    result = find_lr(train, backbone=estimator.backbone, pretrained=estimator.pretrained,
                     backbone_options=estimator.backbone_options, batch_size=estimator.batch_size,
                     layer_decay=estimator.layer_decay, seed=estimator.seed,
                     config=LRFinderConfig(num_steps=RANGE_TEST_STEPS, mixed_precision=estimator.mixed_precision))
    return float(result.suggestion), {"suggestion": result.suggestion, "rule": result.rule,
                                      "steps": len(result.lrs), "notes": list(result.notes)}


def write_choices(run: Any, choice: AutoChoice) -> Any:
    """``RUN/choices.json``: what the automatic default chose and why (the report shows it)."""
    from pathlib import Path

    from transferkit.safety import write_json

    return write_json(Path(run) / CHOICES_FILE, numpy_free(choice.to_dict()))


def numpy_free(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {key: numpy_free(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [numpy_free(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value
