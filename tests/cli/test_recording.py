"""--report/--track on the command line: defaults, the environment switches, and a tracked fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import blob_image_folder, invoke

IMAGE = ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return blob_image_folder(tmp_path_factory.mktemp("recording") / "data", n_per_class=6)


def test_a_tracked_fit_logs_to_mlruns_in_the_working_directory(images: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke("fit", images, *IMAGE, "--out", tmp_path / "run", "--track", "--no-report")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run" / "report.html").exists()
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("transferkit").experiment_id])
    assert run.data.params["strategy"] == "linear_probe" and run.data.params["backbone"] == "timm:test_efficientnet"
    assert "fit_seconds" in run.data.metrics


def test_the_environment_turns_report_and_tracking_off_and_the_flag_back_on(images: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # conftest sets TRANSFERKIT_REPORT=0 and TRANSFERKIT_TRACK=0 for the whole suite
    assert invoke("fit", images, *IMAGE, "--out", tmp_path / "quiet").exit_code == 0
    assert not (tmp_path / "quiet" / "report.html").exists() and not (tmp_path / "mlruns").exists()
    result = invoke("fit", images, *IMAGE, "--out", tmp_path / "loud", "--report")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "loud" / "report.html").is_file() and not (tmp_path / "mlruns").exists()
