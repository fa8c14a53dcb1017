"""The command line, through typer's CliRunner: fit, evaluate, predict, listings, and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import support
from support import assert_user_error, invoke, write_csv
from transferkit.data import SkippedItemWarning


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path, Path]:
    """``(data.csv, held-out test.csv, run directory)`` of a CLI linear-probe fit."""
    folder = tmp_path_factory.mktemp("cli_text")
    helpers = support
    data = write_csv(folder / "data.csv", *helpers.sentiment_texts(12, seed=0))
    test = write_csv(folder / "test.csv", *helpers.sentiment_texts(8, seed=1))
    run = folder / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "linear_probe", "--out", run)
    assert result.exit_code == 0, result.output
    assert f"wrote {run}" in result.stdout
    return data, test, run


def test_fit_writes_a_run_directory(text_run: tuple[Path, Path, Path]) -> None:
    _, _, run = text_run
    manifest = json.loads((run / "transferkit.json").read_text())
    assert manifest["strategy"] == "linear_probe" and manifest["classes"] == ["neg", "pos"]
    assert (run / "head.safetensors").is_file()
    # every run has a metrics.json, even the linear probe's, which keeps no validation split
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"] is None and "linear probe cross-validates" in metrics["no_validation"]


def test_evaluate_prints_metrics_json_and_saves_them(text_run: tuple[Path, Path, Path]) -> None:
    _, test, run = text_run
    result = invoke("evaluate", run, test, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= metrics.keys()
    assert metrics["n"] == 16 and set(metrics["per_class"]) == {"neg", "pos"}
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 16
    assert metrics["accuracy"] > 0.5
    saved = json.loads((run / "evaluations" / "test.json").read_text())
    assert saved["data"] == str(test) and saved["accuracy"] == metrics["accuracy"]


def test_predict_prints_json_lines(text_run: tuple[Path, Path, Path]) -> None:
    _, _, run = text_run
    result = invoke("predict", run, "good great film", "awful terrible plot", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["input"] for row in rows] == ["input 1", "input 2"]
    for row in rows:
        assert row["label"] in ("neg", "pos")
        assert set(row["probabilities"]) == {"neg", "pos"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["probabilities"][row["label"]] == max(row["probabilities"].values())


def test_backbones_lists_the_zoo_and_the_sources() -> None:
    result = invoke("backbones")
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"efficientnet_lite0", "minilm", "whisper_tiny_en", "timm:", "hf:", "local:"} <= names


def test_strategies_lists_the_registered_strategies() -> None:
    result = invoke("strategies")
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"linear_probe", "finetune"} <= names


# -- user errors: exit 2, one line, no run directory ---------------------------------------------


def test_unknown_backbone(text_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, _, _ = text_run
    result = invoke("fit", data, "--backbone", "no_such_backbone", "--out", tmp_path / "run")
    assert_user_error(result, "no_such_backbone")
    assert list(tmp_path.iterdir()) == []


def test_wrong_label_column(text_run: tuple[Path, Path, Path], tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, _, _ = text_run
    result = invoke(
        "fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--label-column", "sentiment", "--out", tmp_path / "run"
    )
    assert_user_error(result, "sentiment", "label")  # names the column asked for and those there are
    assert list(tmp_path.iterdir()) == []


def test_existing_out_directory(text_run: tuple[Path, Path, Path], tiny_bert_dir: Path) -> None:
    data, _, run = text_run
    before = sorted(p.name for p in run.iterdir())
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run)
    assert_user_error(result, str(run), "--overwrite")
    assert sorted(p.name for p in run.iterdir()) == before


def test_fit_finetunes_in_bf16_and_refuses_an_unknown_precision(text_run: tuple[Path, Path, Path],
                                                                 tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, test, _ = text_run
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "finetune", "--epochs", "1",
                    "--mixed-precision", "bf16", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "transferkit.json").read_text())
    assert manifest["estimator_params"]["mixed_precision"] == "bf16"
    assert invoke("evaluate", tmp_path / "run", test, "--json").exit_code == 0
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "finetune",
                    "--mixed-precision", "half", "--out", tmp_path / "other")
    assert_user_error(result, "'half'", "auto")
    assert not (tmp_path / "other").exists()


def test_fit_contrastive_with_setfits_pair_loss(text_run: tuple[Path, Path, Path], tiny_bert_dir: Path,
                                                tmp_path: Path) -> None:
    data, test, _ = text_run
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "contrastive", "--epochs", "1",
                    "--param", "loss=cosine_pairs", "--param", "strategy.ce=false", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "run" / "transferkit.json").read_text())["strategy_info"]["settings"]
    assert (settings["strategy"]["loss"], settings["strategy"]["ce"]) == ("cosine_pairs", False)
    assert invoke("evaluate", tmp_path / "run", test, "--json").exit_code == 0
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "contrastive",
                    "--param", "loss=l2sp", "--out", tmp_path / "other")
    assert_user_error(result, "'l2sp'", "cosine_pairs")
    assert not (tmp_path / "other").exists()


def test_missing_data_path(tiny_bert_dir: Path, tmp_path: Path) -> None:
    result = invoke("fit", tmp_path / "nope.csv", "--backbone", f"hf:{tiny_bert_dir}", "--out", tmp_path / "run")
    assert_user_error(result, "nope.csv")
    assert not (tmp_path / "run").exists()


def test_evaluate_a_directory_that_is_not_a_run(text_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, test, _ = text_run
    assert_user_error(invoke("evaluate", tmp_path, test), str(tmp_path))


# -- an image folder with a corrupt file ---------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tl/`` and ``br/`` of PNG images, and one ``tl/broken.jpg`` that is not an image."""
    root = tmp_path_factory.mktemp("cli_images") / "images"
    images, labels = support.blob_images(6)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i:02d}.png")
    (root / "tl" / "broken.jpg").write_bytes(b"<html>404 not found</html>")
    return root


IMAGE_OPTIONS = (
    "--backbone",
    "timm:test_efficientnet",
    "--from-scratch",
    "--image-size",
    "32",
    "--strategy",
    "linear_probe",
)


def test_on_error_skip_fits_and_reports_the_count(image_folder: Path, tmp_path: Path) -> None:
    with pytest.warns(SkippedItemWarning) as caught:
        result = invoke("fit", image_folder, *IMAGE_OPTIONS, "--on-error", "skip", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    messages = [str(w.message) for w in caught]
    assert any("broken.jpg" in m for m in messages)
    summary = f"skipped 1 of 13 items in {image_folder} that could not be read"
    assert [m for m in messages if "skipped 1 of" in m] == [summary]
    assert "skipped" not in result.stderr  # the summary is the warning, not a second line of the CLI's
    assert "on 12 image samples" in result.stderr
    assert (tmp_path / "run" / "transferkit.json").is_file()


def test_on_error_fail_names_the_file(image_folder: Path, tmp_path: Path) -> None:
    result = invoke("fit", image_folder, *IMAGE_OPTIONS, "--on-error", "fail", "--out", tmp_path / "run")
    assert_user_error(result, "broken.jpg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_json_output_of_an_efficientnet_run_is_json_only(image_folder: Path, tmp_path: Path) -> None:
    """Nothing but the JSON reaches stdout (the weights library's loading message included)."""
    run = tmp_path / "run"
    fit = invoke("fit", image_folder, "--backbone", "efficientnet_lite0", "--image-size", "64",
                 "--strategy", "linear_probe", "--out", run)
    assert fit.exit_code == 0, fit.output
    predict = invoke("predict", run, image_folder / "tl" / "00.png", "--json")
    assert predict.exit_code == 0, predict.output
    assert [json.loads(line)["label"] in ("br", "tl") for line in predict.stdout.splitlines()] == [True]
    assert "Loaded pretrained weights" not in predict.stdout
    evaluate = invoke("evaluate", run, image_folder, "--json")
    assert evaluate.exit_code == 0, evaluate.output
    assert json.loads(evaluate.stdout)["n"] == 12


def test_a_recorded_config_repeats_the_run_and_the_command_line_overrides_it(
        text_run: tuple[Path, Path, Path], tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, test, _ = text_run
    first = tmp_path / "first"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "lora", "--epochs", "1",
                    "--lr", "0.005", "--val-fraction", "0", "--param", "r=2", "--param", "strategy.alpha=4",
                    "--regularizer", "l2sp", "--param", "l2sp.alpha=0.5", "--out", first)
    assert result.exit_code == 0, result.output
    recorded = (first / "config.toml").read_text()
    assert 'strategy = "lora"' in recorded and "[param.strategy]" in recorded and "[param.l2sp]" in recorded
    again = tmp_path / "again"
    result = invoke("fit", data, "--config", first / "config.toml", "--out", again)
    assert result.exit_code == 0, result.output
    manifests = [json.loads((run / "transferkit.json").read_text()) for run in (first, again)]
    assert manifests[0]["strategy_info"]["settings"] == manifests[1]["strategy_info"]["settings"]
    assert manifests[1]["strategy_info"]["settings"]["strategy"]["r"] == 2
    assert manifests[1]["strategy_info"]["settings"]["l2sp"] == {"alpha": 0.5, "beta": 0.01}
    outputs = [invoke("predict", run, "good great film", "awful plot", "--json").stdout for run in (first, again)]
    assert outputs[0] == outputs[1]
    # the command line wins over the file, option by option and setting by setting
    other = tmp_path / "other"
    result = invoke("fit", data, "--config", first / "config.toml", "--param", "r=4", "--epochs", "2",
                    "--out", other)
    assert result.exit_code == 0, result.output
    manifest = json.loads((other / "transferkit.json").read_text())
    assert manifest["strategy_info"]["settings"]["strategy"]["r"] == 4 and manifest["strategy_info"]["epochs"] == 2
    assert manifest["strategy_info"]["settings"]["strategy"]["alpha"] == 4


def test_unknown_settings_and_options_are_one_clear_error(text_run: tuple[Path, Path, Path], tiny_bert_dir: Path,
                                                          tmp_path: Path) -> None:
    data, _, _ = text_run
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "gradual",
                    "--param", "every=2", "--out", tmp_path / "run")
    assert_user_error(result, "strategy 'gradual' has no setting 'every'", "unfreeze_every")
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "gradual",
                    "--param", "unfreeze_every=often", "--out", tmp_path / "run")
    assert_user_error(result, "unfreeze_every='often'", "an integer")
    config = tmp_path / "run.toml"
    config.write_text('strategy = "finetune"\nepoch = 3\n')
    result = invoke("fit", data, "--config", config, "--out", tmp_path / "run")
    assert_user_error(result, "unknown option 'epoch'", "epochs")
    assert not (tmp_path / "run").exists()
