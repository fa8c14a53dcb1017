"""``--task`` on the command line: inferred from the labels, asked for when they are numbers, and used by
``evaluate`` and ``predict`` (tables and ``--json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import support
from support import assert_user_error, invoke, write_csv


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    """``(test.csv, run)`` of a fit on a table whose label cells read ``a|b``, without --task."""
    folder = tmp_path_factory.mktemp("cli_multilabel")
    data = write_csv(folder / "data.csv", *support.multilabel_texts(40, seed=0))
    test = write_csv(folder / "test.csv", *support.multilabel_texts(20, seed=1))
    run = folder / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run)
    assert result.exit_code == 0, result.output
    assert ", multilabel) on 40 text samples" in result.stderr  # the task inferred from the a|b cells
    return test, run


def test_a_bar_in_the_labels_makes_a_multilabel_run(multilabel_run: tuple[Path, Path]) -> None:
    _, run = multilabel_run
    manifest = json.loads((run / "transferkit.json").read_text())
    assert manifest["task"]["name"] == "multilabel"
    assert manifest["task"]["encoding"]["labels"] == ["acting", "neg", "plot", "pos"]


def test_multilabel_evaluate_and_predict(multilabel_run: tuple[Path, Path]) -> None:
    test, run = multilabel_run
    result = invoke("evaluate", run, test, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["micro_f1"] > 0.9 and {"macro_f1", "subset_accuracy", "hamming_loss", "per_label"} <= metrics.keys()
    table = invoke("evaluate", run, test, "--name", "again")
    assert table.exit_code == 0 and "micro-F1" in table.stdout and "Hamming loss" in table.stdout
    result = invoke("predict", run, "good great plot acting", "--json")
    record = json.loads(result.stdout)
    assert record["input"] == "input 1" and set(record["labels"]) == {"acting", "plot", "pos"}
    line = invoke("predict", run, "awful sad plot").stdout.strip().split("\t")
    assert line[0] == "input 1" and line[1] == "neg|plot"


@pytest.fixture(scope="module")
def ratings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli_regression")
    texts, values = support.rated_texts(40, seed=0)
    data = write_csv(folder / "data.csv", texts, [str(v) for v in values])
    texts, values = support.rated_texts(20, seed=1)
    return data, write_csv(folder / "test.csv", texts, [str(v) for v in values])


def test_numeric_labels_ask_for_the_task(ratings: tuple[Path, Path], tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, _ = ratings
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", tmp_path / "run")
    assert_user_error(result, f"the labels of {data} are all numbers", "--task regression", "--task classification")
    assert not (tmp_path / "run").exists()


def test_regression_from_the_command_line(ratings: tuple[Path, Path], tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, test = ratings
    run = tmp_path / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--task", "regression", "--out", run)
    assert result.exit_code == 0, result.output
    metrics = json.loads(invoke("evaluate", run, test, "--json").stdout)
    assert metrics["r2"] > 0.8 and {"mse", "mae", "rmse"} <= metrics.keys()
    assert "R²" in invoke("evaluate", run, test, "--name", "table").stdout
    value = json.loads(invoke("predict", run, "good great lovely fine", "--json").stdout)["value"]
    assert value > 4  # four positive words: about five stars, in the data's units
    assert float(invoke("predict", run, "bad awful sad poor").stdout.split("\t")[1]) < 2


def test_an_unknown_task_is_refused_before_reading(tmp_path: Path) -> None:
    result = invoke("fit", tmp_path / "missing.csv", "--task", "pose", "--out", tmp_path / "run")
    assert_user_error(result, "unknown task 'pose'", "classification, detection, generation, multilabel, ner, "
                      "regression")


def test_the_tasks_listing_names_the_backbone_output_each_reads() -> None:
    result = invoke("list", "task")
    assert result.exit_code == 0
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["classification", "pooled"], ["detection", "feature_maps"], ["generation", "tokens"], ["multilabel", "pooled"],
        ["ner", "tokens"], ["regression", "pooled"], ["verification", "pooled"]]


def test_a_file_in_two_class_folders_makes_a_multilabel_image_run(tmp_path: Path) -> None:
    """Squares top-left (tl), bottom-right (br) or both: an image with both sits in tl/ and, as a
    symbolic link, in br/."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(18):
        image = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        labels = [["tl"], ["br"], ["tl", "br"]][i % 3]
        if "tl" in labels:
            image[:16, :16] = 230
        if "br" in labels:
            image[16:, 16:] = 230
        first = root / labels[0] / f"{i:02d}.png"
        first.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(first)
        for other in labels[1:]:
            (root / other).mkdir(exist_ok=True)
            (root / other / f"{i:02d}.png").symlink_to(first)
    run = tmp_path / "run"
    options = ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32")
    result = invoke("fit", root, *options, "--out", run)
    assert result.exit_code == 0, result.output
    assert "multilabel) on 18 image samples" in result.stderr  # 24 files, 18 distinct images
    assert json.loads((run / "transferkit.json").read_text())["task"]["name"] == "multilabel"
    metrics = json.loads(invoke("evaluate", run, root, "--json").stdout)
    assert metrics["n"] == 18 and metrics["per_label"]["tl"]["support"] == 12


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A linear probe of named entities fitted on a CoNLL file (``support.tagged_sentences``)."""
    folder = tmp_path_factory.mktemp("cli_ner")
    sentences, tags = support.tagged_sentences(60, seed=0)
    blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(words, labels, strict=True))
              for words, labels in zip(sentences, tags, strict=True)]
    (folder / "train.conll").write_text("\n\n".join(blocks) + "\n")
    result = invoke("fit", folder / "train.conll", "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "linear_probe",
                    "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_ner_predict_json_prints_a_list_of_entities_per_input(ner_run: Path) -> None:
    import transferkit

    texts = ["  the plot was good, awful acting.", "the film", "bad plot"]
    result = invoke("predict", ner_run, *texts, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(lines) == len(texts) and all(isinstance(line, list) for line in lines)  # JSON Lines, in order
    assert lines[1] == []  # no entity in "the film"
    entities = [(i, e) for i, line in enumerate(lines) for e in line]
    assert [(e["text"], e["label"]) for _, e in entities] == [("good", "POS"), ("awful", "NEG"), ("bad", "NEG")]
    assert all(set(e) == {"text", "start", "end", "label", "score"} for _, e in entities)
    assert all(texts[i][e["start"]:e["end"]] == e["text"] for i, e in entities)  # offsets into the input as given
    assert lines[0][0]["start"] == 15  # counted from the input's first character, leading spaces included
    # the score is the mean, over the entity's words, of the predicted tag's probability
    scores = transferkit.load(ner_run).predict_scores(texts[:1])[0]
    word = [span[0] for span in scores.sentence.spans].index(15)
    assert lines[0][0]["score"] == pytest.approx(scores.values[word].max(), abs=1e-4)
    assert 0 < lines[0][0]["score"] <= 1
