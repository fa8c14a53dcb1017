"""``cache_frozen``: the last layer groups train on the kept outputs of the frozen ones, as they would on the loop."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import support
from transferkit import TransferClassifier
from transferkit.errors import ConfigError


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout, so that the loop's frozen layers compute exactly what was kept."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("bert_no_dropout")
    for name in tiny_bert_dir.iterdir():
        if name.is_file():
            shutil.copy(name, folder / name.name)
    model = BertModel.from_pretrained(tiny_bert_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(folder)
    return folder


def fit(folder: Path, strategy: str, **params) -> TransferClassifier:
    texts, labels = support.sentiment_texts(24, seed=1)
    torch.manual_seed(0)
    return TransferClassifier(backbone=f"hf:{folder}", strategy=strategy, epochs=2, lr=1e-3, batch_size=8,
                              progress=False, val_fraction=0.25, strategy_params=params).fit(texts, labels)


@pytest.mark.parametrize("strategy", ["partial", "lp_ft"])
def test_kept_outputs_train_the_same_weights_as_the_loop(no_dropout_bert: Path, strategy: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.backbones.split import TopBlocks

    monkeypatch.setattr(TopBlocks, "group_by_length", False)  # the loop's batches, to compare one to one
    looped = fit(no_dropout_bert, strategy, train_last_k=1)
    kept = fit(no_dropout_bert, strategy, train_last_k=1, cache_frozen=True)
    assert kept.strategy_info_["cache_frozen"] is True and kept.backbone_trained_
    before = TransferClassifier(backbone=f"hf:{no_dropout_bert}", progress=False).fit(
        *support.sentiment_texts(24, seed=1)).model_.backbone.state_dict()
    trained, reference = kept.model_.backbone.state_dict(), looped.model_.backbone.state_dict()
    moved = [k for k in trained if not torch.equal(trained[k], before[k])]
    assert moved and all(".layer.1." in k for k in moved)  # only the last block trained
    for key in trained:
        torch.testing.assert_close(trained[key], reference[key], atol=1e-4, rtol=1e-4)
    texts, _ = support.sentiment_texts(10, seed=7)
    np.testing.assert_allclose(kept.predict_proba(texts), looped.predict_proba(texts), atol=1e-4)
    assert [row["epoch"] for row in kept.history_] == [row["epoch"] for row in looped.history_]


def test_cache_frozen_needs_train_last_k(tiny_bert_dir: Path) -> None:
    with pytest.raises(ConfigError, match="cache_frozen needs train_last_k"):
        fit(tiny_bert_dir, "lp_ft", cache_frozen=True)


def test_cache_frozen_refuses_a_backbone_that_cannot_be_cut() -> None:
    images, labels = support.blob_images(8)
    clf = TransferClassifier(backbone="timm:test_efficientnet", pretrained=False, backbone_options={"image_size": 32},
                             strategy="partial", epochs=1, progress=False,
                             strategy_params={"train_last_k": 1, "cache_frozen": True})
    with pytest.raises(ConfigError, match="cannot be cut between its layers"):
        clf.fit(images, labels)


def test_the_cli_fits_on_kept_outputs_with_checkpoints_and_predicts(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import json

    from support import assert_user_error, invoke, write_csv

    data = write_csv(tmp_path / "data.csv", *support.sentiment_texts(12, seed=1))
    run = tmp_path / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "lp_ft", "--epochs", "2",
                    "--param", "train_last_k=1", "--param", "cache_frozen=true", "--out", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "transferkit.json").read_text())["strategy"] == "lp_ft"
    predicted = invoke("predict", run, "good fine film", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout.strip().splitlines()[-1])["label"] in ("pos", "neg")
    refused = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "partial", "--param",
                     "cache_frozen=true", "--param", "train_last_k=3", "--out", tmp_path / "other")
    assert_user_error(refused, "cache_frozen needs train_last_k between 1 and 2")
    assert not (tmp_path / "other").exists()
