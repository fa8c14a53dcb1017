"""The generation task: prompt/completion data, the completion-only loss, training on the one loop,
generation, metrics beside the untuned model, and bad input (tiny random Llama and T5 models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import support
from transferkit import TransferEstimator, load
from transferkit.cli import app
from transferkit.errors import ConfigError, DataError
from transferkit.tasks import make_task
from transferkit.tasks.base import IGNORE_INDEX


def write_jsonl(path: Path, prompts: list[str], completions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in zip(prompts, completions,
                                                                                                strict=True)))
    return path


def test_prompt_completion_tables_are_read_and_an_empty_completion_names_its_line(tmp_path: Path) -> None:
    task = make_task("generation")
    samples = task.read_data(write_jsonl(tmp_path / "d.jsonl", ["good film", "bad plot"], ["pos", "neg"]))
    assert samples is not None and samples.items == ["good film", "bad plot"] and samples.labels == ["pos", "neg"]
    (tmp_path / "d.csv").write_text("prompt,completion\ngood film,pos\nbad plot,\n")
    samples = task.read_data(tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"d.csv row 3: the completion is empty"):
        task.fit_targets(samples.labels, origins=samples.origins)
    (tmp_path / "other.csv").write_text("text,label\ngood film,pos\n")
    assert task.read_data(tmp_path / "other.csv") is None  # the generic reader takes --text-column/--label-column


def test_the_loss_reads_the_completion_tokens_only() -> None:
    task = make_task("generation").fit_targets(["x"])
    targets = torch.tensor([[IGNORE_INDEX, 3, 1, IGNORE_INDEX]])
    logits = torch.full((1, 4, 5), -10.0)
    logits[0, 1, 3] = logits[0, 2, 1] = 10.0  # right on the completion
    low = task.loss(logits, targets)
    logits[0, 0] = logits[0, 3] = torch.randn(5) * 10  # anything on the prompt and padding
    assert float(task.loss(logits, targets)) == pytest.approx(float(low))
    assert float(low) < 1e-6
    assert task.score(logits, targets) == 1.0 and task.score(task.validation_outputs(logits, targets), targets) == 1.0


@pytest.mark.parametrize(("strategy", "lr", "bar"), [("finetune", 1e-2, 0.75), ("lora", 2e-2, 0.25)])
def test_fitting_teaches_the_completions_and_the_run_reloads(strategy: str, lr: float, bar: float,
                                                             tiny_llama_dir: Path, tmp_path: Path) -> None:
    prompts, completions = support.sentiment_texts(12, seed=0)
    est = TransferEstimator(backbone=f"hf:{tiny_llama_dir}", strategy=strategy, task="generation", epochs=12,
                            lr=lr, batch_size=8, progress=False, val_fraction=0.2, patience=None)
    est.fit(prompts, completions)
    assert est.history_[-1]["train_loss"] < 0.2 * est.history_[0]["train_loss"]
    test_prompts, test_completions = support.sentiment_texts(6, seed=3)
    metrics = est.evaluate(test_prompts, test_completions)
    # full fine-tuning learns the mapping; LoRA on a random 32-wide model less of it (its embeddings stay random)
    assert metrics["exact_match"] >= bar and metrics["rouge_l"] >= bar
    assert metrics["zero_shot"]["exact_match"] == 0.0  # the random model before tuning
    run = est.save(tmp_path / strategy)
    assert (run / "adapter.safetensors").exists() == (strategy == "lora")
    assert (run / "backbone.safetensors").exists() == (strategy == "finetune")
    reloaded = load(run)
    assert list(reloaded.predict(test_prompts)) == list(est.predict(test_prompts))
    assert reloaded.evaluate(test_prompts, test_completions)["zero_shot"] == metrics["zero_shot"]


def test_an_encoder_decoder_learns_the_completions(tiny_t5_dir: Path) -> None:
    prompts, completions = support.sentiment_texts(12, seed=0)
    est = TransferEstimator(backbone=f"hf:{tiny_t5_dir}", strategy="finetune", task="generation", epochs=12, lr=1e-2,
                            batch_size=8, progress=False, val_fraction=0.2)
    est.fit(prompts, completions)
    test_prompts, test_completions = support.sentiment_texts(6, seed=3)
    assert est.evaluate(test_prompts, test_completions, reference=False)["exact_match"] >= 0.75


def test_generation_needs_a_generative_backbone_and_a_trained_model(tiny_bert_dir: Path) -> None:
    from transferkit.errors import BackboneError

    with pytest.raises(BackboneError, match="needs a generative backbone"):
        TransferEstimator(backbone=f"hf:{tiny_bert_dir}", strategy="finetune", task="generation",
                          progress=False).fit(["a", "b"], ["c", "d"])
    with pytest.raises(ConfigError, match="use --strategy lora or finetune"):
        make_task("generation").fit_targets(["x"]).fit_probe(np.zeros((2, 2)), np.zeros(2), c=None, seed=0)


def test_cli_fit_predict_evaluate_and_bad_input(tiny_llama_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    prompts, completions = support.sentiment_texts(8, seed=0)
    data = write_jsonl(tmp_path / "train.jsonl", prompts, completions)
    empty = write_jsonl(tmp_path / "empty.jsonl", prompts[:3], [completions[0], "", completions[2]])
    long = write_jsonl(tmp_path / "long.jsonl", [prompts[0], " ".join(["film"] * 70)], completions[:2])
    base = ["fit", "--task", "generation", "--backbone", f"hf:{tiny_llama_dir}", "--strategy", "finetune",
            "--epochs", "8", "--lr", "1e-2", "--batch-size", "8"]
    for bad, message in ((empty, "empty.jsonl line 2: the completion is empty"),
                         (long, "long.jsonl line 2: the prompt is 70 tokens long")):
        result = runner.invoke(app, [*base, str(bad), "--out", str(tmp_path / "bad")])
        assert result.exit_code != 0 and message in result.output
        assert len(result.output.strip().splitlines()) <= 2  # the "fitting ..." line and the error
        assert not (tmp_path / "bad").exists()
    result = runner.invoke(app, [*base, str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), "good film", "--json", "--max-new-tokens", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert len(record["completion"].split()) <= 1  # one new token at most (a word of this vocabulary)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "run"), str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{"):])
    assert {"exact_match", "rouge_l", "chrf", "zero_shot"} <= set(metrics)
