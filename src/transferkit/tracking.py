"""Logging each run to MLflow: its parameters, metrics, per-epoch history and small artifacts.

The store is ``MLFLOW_TRACKING_URI`` when set (a tracking server, a database), else the local folder
``./mlruns`` (MLflow's file store, which newer MLflow versions only accept when ``MLFLOW_ALLOW_FILE_STORE``
is set; this module sets it for that default store only). Runs go to the experiment ``transferkit`` (or
``MLFLOW_EXPERIMENT_NAME``). Tracking never fails a run: any error, a missing ``mlflow`` included, is one
warning line and the run goes on.

Artifacts are the run's small files (manifest, metrics, history, config, report and its figures); the
weights stay in the run directory, whose path is the MLflow run's ``transferkit.run_dir`` tag.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXPERIMENT = "transferkit"
DEFAULT_STORE = "mlruns"
MAX_ARTIFACT_BYTES = 20 * 1024 * 1024  # files above this (weights) are not copied into the store
_MAX_PARAM = 500  # characters of a parameter's value


class TrackingWarning(UserWarning):
    """Logging a run to MLflow failed; the run itself is unaffected."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or the ``./mlruns`` folder of the working directory as a ``file:`` URI."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(DEFAULT_STORE).resolve().as_uri()


def flat_metrics(metrics: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested metrics dict, keyed by their dotted path (``per_class.bees.recall``)."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[_clean(name)] = float(value)
    return out


def _clean(name: str) -> str:
    # MLflow keys take letters, digits, _ - . space / only
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def log_run(command: str, *, params: Mapping[str, Any], metrics: Mapping[str, Any] | None = None,
            history: Sequence[Mapping[str, Any]] = (), folder: str | Path | None = None,
            run_name: str | None = None) -> str | None:
    """Log one run; returns the MLflow run id, or None when tracking failed (with one warning line).

    Args:
        command: the transferkit command (``fit``, ``adapt``, ...), a tag of the run.
        params: settings, logged as strings.
        metrics: final metrics (nested dicts are flattened).
        history: per-epoch rows; each number is logged as a metric at step ``epoch``.
        folder: the run's output folder; its files up to ``MAX_ARTIFACT_BYTES`` become artifacts.
    """
    uri = tracking_uri()
    try:
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        tags = {"transferkit.command": command}
        if folder is not None:
            tags["transferkit.run_dir"] = str(Path(folder).resolve())
        run = client.create_run(experiment_id, run_name=run_name or (Path(folder).name if folder else command),
                                tags=tags)
        run_id = run.info.run_id
        stamp = int(run.info.start_time)
        logged = [Param(_clean(k), str(v)[:_MAX_PARAM]) for k, v in params.items() if v is not None]
        values = [Metric(k, v, stamp, 0) for k, v in flat_metrics(metrics).items()]
        for n, row in enumerate(history):
            step = int(row.get("epoch", n + 1))
            values += [Metric(k, v, stamp, step) for k, v in flat_metrics(row).items() if k != "epoch"]
        client.log_batch(run_id, tags=[RunTag("transferkit.version", _version())])
        for start in range(0, len(logged), 100):  # MLflow's limits per batch: 100 params, 1000 metrics
            client.log_batch(run_id, params=logged[start:start + 100])
        for start in range(0, len(values), 1000):
            client.log_batch(run_id, metrics=values[start:start + 1000])
        if folder is not None:
            _log_files(client, run_id, Path(folder))
        client.set_terminated(run_id)
        return run_id
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the run it records
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"tracking to {uri} failed ({type(exc).__name__}: {message[:200]}); the run is "
                      "unaffected (--no-track turns tracking off)", TrackingWarning, stacklevel=2)
        return None


def _log_files(client: Any, run_id: str, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES and not path.name.startswith("."):
            relative = path.parent.relative_to(folder)
            client.log_artifact(run_id, str(path), None if str(relative) == "." else str(relative))


def _version() -> str:
    from transferkit._version import __version__

    return __version__
