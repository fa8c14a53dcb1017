"""MLflow tracking: what a run logs, and that a failing store never fails the run."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from transferkit.tracking import TrackingWarning, flat_metrics, log_run


def test_flat_metrics_keeps_finite_numbers_under_dotted_names() -> None:
    nested = {"accuracy": 0.5, "per_class": {"a b": {"recall": 1.0}}, "n": 4, "ok": True, "bad": float("nan"),
              "matrix": [[1, 2]], "none": None}
    assert flat_metrics(nested) == {"accuracy": 0.5, "per_class.a b.recall": 1.0, "n": 4.0}


def test_log_run_records_params_metrics_history_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    folder = tmp_path / "run"
    (folder / "report").mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "report" / "plot.png").write_bytes(b"png")
    history = [{"epoch": 1, "train_loss": 0.9, "val_accuracy": 0.6}, {"epoch": 2, "train_loss": 0.5,
                                                                      "val_accuracy": 0.8}]
    run_id = log_run("fit", params={"strategy": "finetune", "lr": 0.001, "unset": None},
                     metrics={"validation": {"accuracy": 0.8}}, history=history, folder=folder)
    assert run_id is not None
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(run_id)
    assert run.data.params == {"strategy": "finetune", "lr": "0.001"}
    assert run.data.metrics["validation.accuracy"] == 0.8 and run.info.status == "FINISHED"
    assert run.data.tags["transferkit.command"] == "fit" and run.data.tags["transferkit.run_dir"] == str(folder)
    steps = [(m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(steps) == [(1, 0.9), (2, 0.5)]
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["metrics.json", "report"]
    assert [a.path for a in client.list_artifacts(run_id, "report")] == ["report/plot.png"]


def test_a_failing_store_is_one_warning_and_no_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert log_run("fit", params={"a": 1}) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(messages) == 1 and "\n" not in messages[0] and "the run is unaffected" in messages[0]
