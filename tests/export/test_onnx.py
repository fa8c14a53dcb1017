"""ONNX export: the exported graph predicts what the PyTorch model predicts, for every exportable task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import assert_user_error, blob_images, invoke, sentiment_texts, tagged_sentences, tone_waves
from transferkit.data import Samples, samples_from_arrays
from transferkit.errors import ArtifactError, ConfigError
from transferkit.export import EXPORTABLE_TASKS, export_onnx, load_engine
from transferkit.export import onnx as onnx_export


def _inputs(name: str) -> Samples:
    """Inputs of other batch sizes and lengths than the export traced (texts of 2 to 12 words)."""
    texts, _ = sentiment_texts(5, seed=3)
    texts = [" ".join([text] * (1 + i % 3)) for i, text in enumerate(texts)]
    waves = [wave[: 1600 * (2 + i % 3)] for i, wave in enumerate(tone_waves(3, seed=3)[0])]
    sentences = [" ".join(words) for words in tagged_sentences(7, seed=3, length=9)[0]]
    made = {"image": lambda: samples_from_arrays(blob_images(3, seed=3)[0], None, modality="image"),
            "text": lambda: samples_from_arrays(texts, None, modality="text"),
            "lora": lambda: samples_from_arrays(texts, None, modality="text"),
            "audio": lambda: samples_from_arrays(waves, None, modality="audio"),
            "ner": lambda: Samples(items=sentences, labels=None, modality="text",
                                   origins=[f"X[{i}]" for i in range(len(sentences))])}
    return made[name]()


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Class probabilities, or the tag probabilities of every word of every sentence (ner), as one array."""
    if scores.dtype == object:
        return np.concatenate([s.values for s in scores])
    return scores


@pytest.mark.parametrize("name", ["image", "text", "audio", "ner", "lora"])
def test_onnx_probabilities_equal_pytorch_within_1e4(exported_runs: dict[str, Path], name: str) -> None:
    run = exported_runs[name]
    samples = _inputs(name)
    torch_scores = _probabilities(load_engine(run, "torch").predict_scores(samples, batch_size=4))
    onnx_scores = _probabilities(load_engine(run, "onnx").predict_scores(samples, batch_size=4))
    difference = float(np.abs(torch_scores - onnx_scores).max())
    print(f"{name}: max |p_onnx - p_torch| = {difference:.2e} over {torch_scores.size} probabilities")
    assert torch_scores.shape == onnx_scores.shape and len(torch_scores) >= len(samples)
    assert difference < 1e-4
    report = json.loads((run / "onnx" / "export.json").read_text())
    assert report["max_abs_diff_outputs"] < 1e-3


def test_the_estimator_and_the_torch_engine_agree(exported_runs: dict[str, Path]) -> None:
    from transferkit import load

    samples = _inputs("text")
    assert np.allclose(load(exported_runs["text"]).predict_scores(samples),
                       load_engine(exported_runs["text"], "torch").predict_scores(samples), atol=1e-6)


def test_the_export_has_dynamic_axes_preprocessing_labels_and_tokenizer(exported_runs: dict[str, Path]) -> None:
    import onnx

    folder = exported_runs["text"] / "onnx"
    graph = onnx.load(str(folder / "model.onnx")).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert shapes == {"input_ids": ["batch", "input_ids_1"], "attention_mask": ["batch", "attention_mask_1"]}
    preprocessing = json.loads((folder / "preprocessing.json").read_text())
    assert preprocessing["modality"] == "text" and preprocessing["text"]["tokenizer"] == "tokenizer/"
    assert (folder / "tokenizer" / "vocab.txt").is_file()
    assert json.loads((folder / "labels.json").read_text())["names"] == ["neg", "pos"]
    image = json.loads((exported_runs["image"] / "onnx" / "preprocessing.json").read_text())["image"]
    assert image["image_size"] == 32 and image["center_crop"] == 32
    audio = json.loads((exported_runs["audio"] / "onnx" / "preprocessing.json").read_text())["audio"]
    assert audio["sample_rate"] == 16000 and audio["front_end"] == "WhisperFeatureExtractor"
    ner = onnx.load(str(exported_runs["ner"] / "onnx" / "model.onnx")).graph.output[0]
    assert [d.dim_param for d in ner.type.tensor_type.shape.dim][:2] == ["batch", "tokens"]


def test_lora_is_merged_and_int8_stays_close(exported_runs: dict[str, Path]) -> None:
    report = json.loads((exported_runs["lora"] / "onnx" / "export.json").read_text())
    assert report["lora_layers_merged"] > 0
    samples = _inputs("text")
    fp32 = load_engine(exported_runs["text"], "onnx").predict_scores(samples)
    int8 = load_engine(exported_runs["text"], "onnx-int8").predict_scores(samples)
    assert (fp32.argmax(1) == int8.argmax(1)).mean() >= 0.8 and np.abs(fp32 - int8).max() < 0.2


def test_a_stale_or_missing_export_is_refused(exported_runs: dict[str, Path], tmp_path: Path) -> None:
    run = Path(shutil.copytree(exported_runs["image"], tmp_path / "run"))
    with pytest.raises(ArtifactError, match="--quantize"):
        load_engine(run, "onnx-int8")
    head = run / "head.safetensors"
    head.write_bytes(head.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ArtifactError, match="other weights"):
        load_engine(run, "onnx")


def test_a_failed_export_leaves_nothing_behind(exported_runs: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: Path, path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "_quantize", broken)
    with pytest.raises(ArtifactError):
        export_onnx(exported_runs["image"], tmp_path / "out", quantize=True)
    assert list(tmp_path.iterdir()) == []


def test_every_task_without_an_export_is_named() -> None:
    assert {"classification", "multilabel", "regression", "ner"} <= set(EXPORTABLE_TASKS.names())
    with pytest.raises(ConfigError, match="exportable tasks: classification"):
        onnx_export.exportable("detection-not-yet")


def test_cli_export_and_predict_with_the_onnx_engine(exported_runs: dict[str, Path], tmp_path: Path) -> None:
    run = Path(shutil.copytree(exported_runs["text"], tmp_path / "run", ignore=shutil.ignore_patterns("onnx")))
    texts = ["good great fine", "bad awful poor terrible"]
    assert_user_error(invoke("predict", run, *texts, "--engine", "onnx"), "transferkit export")
    exported = invoke("export", run, "--format", "onnx")
    assert exported.exit_code == 0, exported.output
    assert "largest difference" in exported.stdout
    lines = {engine: [json.loads(line) for line in invoke("predict", run, *texts, "--json", "--engine",
                                                          engine).stdout.splitlines()]
             for engine in ("torch", "onnx")}
    assert [r["label"] for r in lines["torch"]] == [r["label"] for r in lines["onnx"]]
    for mine, theirs in zip(lines["torch"], lines["onnx"], strict=True):
        assert mine["input"] == theirs["input"]
        assert all(abs(p - theirs["probabilities"][k]) < 1e-4 for k, p in mine["probabilities"].items())
    assert_user_error(invoke("export", run), "already exists")
    assert_user_error(invoke("export", run, "--format", "tflite", "--overwrite"), "unknown export format")


def test_the_accuracy_cost_of_int8_is_measured_on_labelled_data(exported_runs: dict[str, Path]) -> None:
    texts, labels = sentiment_texts(6, seed=4)
    samples = samples_from_arrays(texts, labels, modality="text")
    run = exported_runs["text"]
    found = onnx_export.evaluate_engines(run, run / "onnx", samples, ["torch", "onnx", "onnx-int8"])
    assert set(found) == {"torch", "onnx", "onnx-int8"}
    assert found["onnx"]["accuracy"] == found["torch"]["accuracy"] and found["torch"]["n"] == 12
    assert 0.0 <= found["onnx-int8"]["accuracy"] <= 1.0
