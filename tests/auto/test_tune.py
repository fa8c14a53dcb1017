"""``transferkit tune``: Optuna trials scored on validation data, pruning through the loop, resume, fit --config."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from support import assert_user_error, invoke, sentiment_texts, write_csv
from transferkit.auto.tune import PruningHook, TuneConfig, tune
from transferkit.config import read_toml
from transferkit.data import Samples
from transferkit.errors import ConfigError
from transferkit.features import cache_dir


def _samples(n: int = 12, seed: int = 0) -> Samples:
    texts, labels = sentiment_texts(n, seed=seed)
    return Samples(items=texts, labels=labels, modality="text", origins=[f"row {i}" for i in range(len(texts))])


def test_pruning_hook_reports_each_epoch_and_prunes_a_trailing_trial() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    hook = PruningHook(trial, "val_accuracy")
    hook.after_validation(0, {"epoch": 1, "val_accuracy": 0.9})
    hook.after_validation(1, {"epoch": 2, "train_loss": 0.3})  # a row without the score reports nothing
    with pytest.raises(optuna.TrialPruned):
        hook.after_validation(2, {"epoch": 3, "val_accuracy": 0.2})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {0: 0.9, 2: 0.2}


def test_tune_writes_a_config_that_fit_reads_and_resumes_from_its_storage(tiny_bert_dir: Path,
                                                                          tmp_path: Path) -> None:
    samples = _samples()
    storage = tmp_path / "search.db"
    config = TuneConfig(trials=2, strategies=("linear_probe", "finetune"), max_epochs=1, batch_size=8)
    first = tune(samples, task="classification", backbone=f"hf:{tiny_bert_dir}", storage=storage, config=config)
    assert [row["state"] for row in first.trials] == ["complete", "complete"]
    assert 0.0 <= first.best_score <= 1.0
    assert first.best_score == max(row["score"] for row in first.trials)
    # fine-tuning trials report their validation score per epoch through the loop's hook; probes report none
    for row in first.trials:
        assert row["epochs_reported"] == (1 if row["params"]["strategy"] == "finetune" else 0)
    # a second call with more trials continues the same study: only the missing trial runs
    again = tune(samples, task="classification", backbone=f"hf:{tiny_bert_dir}", storage=storage,
                 config=TuneConfig(trials=3, strategies=("linear_probe", "finetune"), max_epochs=1, batch_size=8))
    assert [row["number"] for row in again.trials] == [0, 1, 2]
    assert again.trials[:2] == first.trials
    best = again.write(tmp_path / "best.toml")
    written = read_toml(best)
    assert written["strategy"] in ("linear_probe", "finetune")
    assert written["backbone"] == f"hf:{tiny_bert_dir}"
    data = write_csv(tmp_path / "data.csv", samples.items, samples.labels)
    result = invoke("fit", data, "--config", best, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert read_toml(tmp_path / "run" / "config.toml")["strategy"] == written["strategy"]


def test_a_storage_of_another_search_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "search.db"
    config = TuneConfig(trials=1, strategies=("linear_probe",))
    tune(_samples(), task="classification", backbone=f"hf:{tiny_bert_dir}", storage=storage, config=config)
    with pytest.raises(ConfigError, match="other data"):
        tune(_samples(seed=1), task="classification", backbone=f"hf:{tiny_bert_dir}", storage=storage, config=config)


def test_cli_tune_prints_trials_and_refuses_an_unknown_strategy(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", *sentiment_texts(10))
    out = tmp_path / "best.toml"
    result = invoke("tune", data, "--backbone", f"hf:{tiny_bert_dir}", "--trials", 2, "--strategies", "linear_probe",
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert "best validation accuracy" in result.stdout
    assert (tmp_path / "best.db").is_file() and read_toml(out)["strategy"] == "linear_probe"
    # both probe trials read the same two feature files (training split, validation split) from the cache
    assert len(list((cache_dir() / "features").glob("*.safetensors"))) == 2
    bad = invoke("tune", data, "--strategies", "nope", "--out", tmp_path / "other.toml")
    assert_user_error(bad, "nope")
