"""Hyperparameter search on Optuna: strategy, learning rate, layer decay, epochs, regulariser strength.

Each trial fits a ``TransferEstimator`` on a split of the training data and is scored on the rest
(the validation data; never an evaluation split). Strategies that train with the loop report the
validation score of every epoch through ``PruningHook`` (a ``train.TrainHooks``), so Optuna's median
pruner stops trials that trail the others; linear-probe trials read the frozen features from the
feature cache, so after the first one they cost a logistic regression. The study lives in an SQLite
file: the same command run again after an interruption continues it (a trial cut off mid-way is
tried again) and only runs the trials still missing. The best configuration is written as the TOML
that ``transferkit fit --config`` reads.

Example:
    >>> result = tune(samples, task="classification", backbone="minilm", storage=Path("search.db"),
    ...               config=TuneConfig(trials=20))
    >>> result.write(Path("best.toml"))  # then: transferkit fit DATA --config best.toml --out RUN
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.config import known_keys
from transferkit.data import Samples
from transferkit.errors import ConfigError, DataError
from transferkit.strategies import STRATEGIES
from transferkit.strategies.run import DEFAULT_LR
from transferkit.train import TrainHooks

STUDY_NAME = "transferkit-tune"
# what a trial may change, and the ranges it searches (the learning rate's around the modality's default)
LR_RANGE = (1 / 30, 3.0)  # times DEFAULT_LR of the modality
LAYER_DECAY_RANGE = (0.5, 1.0)
PROBE_C_RANGE = (1e-3, 1e2)
REGULARIZER_STRENGTH = {"l2sp": ("alpha", 1e-4, 1.0)}  # regulariser -> (setting, low, high), searched on a log scale


@dataclass
class TuneConfig:
    """What a search tries and how long it runs.

    Attributes:
        trials: trials in all (an interrupted study counts the trials it already finished).
        timeout: stop starting trials after this many seconds (None: no limit).
        strategies: the strategies a trial chooses from.
        max_epochs: the most epochs a fine-tuning trial trains.
        val_fraction: share of the training data the trials are scored on.
        batch_size: batch size of every trial.
        seed: seeds the split, the sampler and every trial's fit.
    """

    trials: int = 20
    timeout: float | None = None
    strategies: tuple[str, ...] = ("linear_probe", "lp_ft", "finetune")
    max_epochs: int = 5
    val_fraction: float = 0.2
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"trials must be at least 1, not {self.trials}")
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be at least 1, not {self.max_epochs}")
        for name in self.strategies:
            STRATEGIES.get(name)  # an unknown name gets the registry's error


class PruningHook(TrainHooks):
    """Reports each epoch's validation score to an Optuna trial and ends the trial when the pruner says so."""

    def __init__(self, trial: Any, key: str) -> None:
        self.trial, self.key = trial, key

    def after_validation(self, epoch: int, row: dict[str, Any]) -> None:
        import optuna

        if self.key not in row:
            return
        self.trial.report(float(row[self.key]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.key}={row[self.key]:.4f} after epoch {epoch + 1}")


@dataclass
class TuneResult:
    """The best trial's settings as ``fit``'s options, and every trial.

    Attributes:
        score_name: the validation score maximised (``accuracy``, ``r2``, ...).
        best_score: the best trial's validation score.
        options: ``fit``'s options of the best trial (strategy, lr, epochs, ...).
        params: the methods' settings by scope (``{"strategy": {"c": 0.1}, "l2sp": {"alpha": 0.01}}``).
        trials: one dict per trial (number, state, params, score, seconds).
        seconds: time spent by this call.
    """

    score_name: str
    best_score: float
    options: dict[str, Any]
    params: dict[str, dict[str, Any]]
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def write(self, path: Path) -> Path:
        """The best configuration as TOML that ``transferkit fit --config`` reads."""
        from transferkit.cli.settings import write_run_config

        return write_run_config(path, self.options, self.params)


def search_space(trial: Any, config: TuneConfig, modality: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One trial's choice: ``fit``'s options and the methods' settings by scope.

    The strategy first; a strategy that trains with the loop (``uses_validation``) then gets a learning rate,
    layer decay, epochs and optionally a regulariser with its strength; one that does not (the probe) gets
    its own inverse regularisation strength ``c`` when its config has one.
    """
    strategy = trial.suggest_categorical("strategy", list(config.strategies))
    entry = STRATEGIES.get(strategy)
    options: dict[str, Any] = {"strategy": strategy, "regularizer": []}
    params: dict[str, dict[str, Any]] = {"strategy": {}}
    if not entry.uses_validation:
        if "c" in known_keys(entry.config):
            params["strategy"]["c"] = trial.suggest_float("c", *PROBE_C_RANGE, log=True)
        return options, params
    base = DEFAULT_LR[modality]
    options["lr"] = trial.suggest_float("lr", base * LR_RANGE[0], base * LR_RANGE[1], log=True)
    options["layer_decay"] = trial.suggest_float("layer_decay", *LAYER_DECAY_RANGE)
    options["epochs"] = trial.suggest_int("epochs", 1, config.max_epochs)
    regularizer = trial.suggest_categorical("regularizer", ["none", *REGULARIZER_STRENGTH])
    if regularizer != "none":
        key, low, high = REGULARIZER_STRENGTH[regularizer]
        options["regularizer"] = [regularizer]
        params[regularizer] = {key: trial.suggest_float(f"{regularizer}.{key}", low, high, log=True)}
    return options, params


def tune(samples: Samples, *, task: str, backbone: str, storage: Path, config: TuneConfig,
         backbone_options: dict[str, Any] | None = None, progress: bool = False) -> TuneResult:
    """Search ``config.trials`` configurations of fitting ``backbone`` to labelled ``samples``; the best one.

    Args:
        samples: the labelled training data; a split of ``config.val_fraction`` scores the trials.
        task: the task name (``classification``, ``regression``, ...).
        backbone: the backbone every trial fits.
        storage: the study's SQLite file (created, or continued when it holds this search's trials).
        config: what to search and for how long.
        backbone_options: image size, text length.

    Raises:
        ConfigError: ``storage`` holds a search on other data, task or backbone.
        DataError: too few samples to hold out validation data.
    """
    import optuna

    from transferkit.data.decode import samples_fingerprint
    from transferkit.tasks import make_task

    start = time.perf_counter()
    objective_task = make_task(task)
    labels = list(samples.labels or [])
    train_idx, val_idx = objective_task.split(labels, config.val_fraction, config.seed)
    if len(val_idx) == 0:
        raise DataError(f"{len(samples)} samples leave no validation data at val_fraction={config.val_fraction}")
    train, val = samples.subset(train_idx), samples.subset(val_idx)
    score_name = objective_task.score_name
    identity = {"data": samples_fingerprint(samples.items, labels), "task": task, "backbone": backbone,
                "backbone_options": dict(backbone_options or {}), "val_fraction": config.val_fraction,
                "seed": config.seed}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(storage, identity, config.seed)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]

    def objective(trial: Any) -> float:
        from transferkit.estimator import TransferEstimator

        options, params = search_space(trial, config, samples.modality)
        trains = STRATEGIES.get(options["strategy"]).uses_validation
        estimator = TransferEstimator(
            backbone=backbone, strategy=options["strategy"], task=task, backbone_options=backbone_options,
            epochs=options.get("epochs"), lr=options.get("lr"), layer_decay=options.get("layer_decay"),
            batch_size=config.batch_size, val_fraction=0.0, seed=config.seed, progress=progress,
            strategy_params=params["strategy"], regularizers=tuple(options["regularizer"]),
            regularizer_params={k: v for k, v in params.items() if k != "strategy"} or None)
        # the probe would fold validation data into its cross-validation: it sees the training split only
        estimator.fit(train, eval_set=(val, None) if trains else None,
                      hooks=(PruningHook(trial, f"val_{score_name}"),) if trains else ())
        score = estimator.score(val)
        trial.set_user_attr("options", options)
        trial.set_user_attr("params", params)
        trial.set_user_attr("strategy_info", _plain(estimator.strategy_info_))
        return score

    remaining = config.trials - len(done)
    if remaining > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=remaining, timeout=config.timeout, catch=())
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise DataError("no trial finished: every trial was pruned or the timeout came first; raise --timeout")
    best = max(completed, key=lambda t: (t.value, -t.number))
    options = {"backbone": backbone, "task": task, "batch_size": config.batch_size, "seed": config.seed,
               "val_fraction": config.val_fraction, **dict(backbone_options or {}), **best.user_attrs["options"]}
    return TuneResult(score_name=score_name, best_score=float(best.value), options=options,
                      params=best.user_attrs["params"], trials=[_trial_row(t) for t in study.trials],
                      seconds=time.perf_counter() - start)


def _open_study(storage: Path, identity: dict[str, Any], seed: int) -> Any:
    """The study in ``storage``: new, or the interrupted one of the same search (its cut-off trial queued again)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # heartbeats are marked experimental; they are how Optuna resumes a cut-off trial
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = RDBStorage(f"sqlite:///{storage}", heartbeat_interval=5, grace_period=10,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(study_name=STUDY_NAME, storage=rdb, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", identity)
    elif stored != identity:
        changed = sorted(key for key in identity if stored.get(key) != identity[key])
        raise ConfigError(f"{storage} holds a search with other {', '.join(changed)}; give another --storage "
                          "or remove that file to start over")
    return study


def _trial_row(trial: Any) -> dict[str, Any]:
    seconds = None
    if trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {"number": trial.number, "state": trial.state.name.lower(), "params": dict(trial.params),
            "score": trial.value, "epochs_reported": len(trial.intermediate_values), "seconds": seconds}


def _plain(value: Any) -> Any:
    """JSON-safe copy of strategy info (Optuna stores user attributes as JSON)."""
    import json

    return json.loads(json.dumps(value, default=repr))
