"""The label-free commands, through typer's CliRunner: zeroshot and cluster, and their user errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

import support
from support import assert_user_error, invoke


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_unlabelled") / "texts.csv"
    texts, labels = support.sentiment_texts(8)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


def test_zeroshot_scores_self_trains_and_writes_a_loadable_model(texts_csv: Path, tiny_bert_dir: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "zs"
    result = invoke("zeroshot", texts_csv, "--labels", "pos,neg", "--describe", "pos=good", "--describe",
                    "neg=bad", "--template", "{}", "--backbone", f"hf:{tiny_bert_dir}", "--self-train", "2",
                    "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["metrics"]) == {"zero_shot", "self_trained"}
    assert summary["metrics"]["zero_shot"]["n"] == 16
    assert [r["round"] for r in summary["self_training"]["rounds"]] == [1, 2]
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and rows[0].keys() == {"item", "zero_shot", "self_trained", "label"}
    predicted = invoke("predict", out / "model", "good great film", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["label"] in ("pos", "neg")


def test_zeroshot_prints_predictions_of_unlabelled_texts(tiny_bert_dir: Path, tmp_path: Path) -> None:
    lines = tmp_path / "texts.txt"
    lines.write_text("good film\nawful plot\n")
    result = invoke("zeroshot", lines, "--labels", "good film,awful plot", "--template", "{}", "--no-centre",
                    "--backbone", f"hf:{tiny_bert_dir}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{lines} line 1\tgood film", f"{lines} line 2\tawful plot"]


def test_zeroshot_labels_not_in_the_data(texts_csv: Path, tiny_bert_dir: Path) -> None:
    result = invoke("zeroshot", texts_csv, "--labels", "negative,positive", "--backbone", f"hf:{tiny_bert_dir}")
    assert_user_error(result, "['neg', 'pos']", "--describe")


def test_zeroshot_describe_errors(texts_csv: Path) -> None:
    assert_user_error(invoke("zeroshot", texts_csv, "--labels", "pos"), "at least two")
    assert_user_error(invoke("zeroshot", texts_csv, "--labels", "pos,neg", "--describe", "meh=so-so"), "'meh'")
    assert_user_error(invoke("zeroshot", texts_csv, "--labels", "pos,neg", "--describe", "pos"), "LABEL=TEXT")


def test_zeroshot_refuses_images(tmp_path: Path) -> None:
    images, labels = support.blob_images(3)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / label / f"{i}.png")
    assert_user_error(invoke("zeroshot", tmp_path, "--labels", "tl,br"), "classifies texts", "image")


def test_cluster_writes_the_folder_and_scores_against_labels(texts_csv: Path, tiny_bert_dir: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "clusters"
    result = invoke("cluster", texts_csv, "--backbone", f"hf:{tiny_bert_dir}", "--k-max", "4", "--map", "pca",
                    "--out", out, "--report")
    assert result.exit_code == 0, result.output
    assert "chosen by silhouette" in result.stdout and "NMI" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k_chosen"] and 2 <= summary["k"] <= 4 and set(summary["scores"]) >= {"nmi", "ari"}
    assert (out / "map.png").is_file() and (out / "assignments.csv").is_file()
    page = (out / "report.html").read_text()  # self-contained: the map is embedded
    assert "Silhouette per k" in page and "data-plot='map.png'><img alt=" in page and "against the labels: nmi" in page
    assert_user_error(invoke("cluster", texts_csv, "--backbone", f"hf:{tiny_bert_dir}", "--out", out), "exists")


def test_cluster_k_larger_than_the_data(texts_csv: Path, tiny_bert_dir: Path) -> None:
    result = invoke("cluster", texts_csv, "--backbone", f"hf:{tiny_bert_dir}", "--k", "50")
    assert_user_error(result, "50 clusters of 16")
