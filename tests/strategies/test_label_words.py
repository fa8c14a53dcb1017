"""The label_words strategy: classes as words a decoder writes next, zero-shot or tuned with LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import support
from transferkit import TransferClassifier, load
from transferkit.errors import ConfigError
from transferkit.strategies.label_words import label_words


def test_zero_shot_scores_are_the_decoders_next_token_logits_of_the_label_words(tiny_llama_dir: Path) -> None:
    texts, labels = support.sentiment_texts(4)
    clf = TransferClassifier(backbone=f"hf:{tiny_llama_dir}", strategy="label_words", progress=False,
                             strategy_params={"zero_shot": True, "template": "{text} is it {labels} ?"})
    clf.fit(texts, labels)
    backbone = clf.model_.backbone
    assert backbone.spec.options["prompt_template"] == "{text} is it neg, pos ?"
    vocab = backbone.tokenizer.get_vocab()
    assert clf.strategy_info_["label_tokens"] == [vocab["neg"], vocab["pos"]]
    ids = backbone.tokenizer(f"{texts[0]} is it neg, pos ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = backbone.model(input_ids=ids).logits[0, -1]  # the model's own next-token logits
    expected = torch.softmax(logits[[vocab["neg"], vocab["pos"]]], 0).numpy()
    np.testing.assert_allclose(clf.predict_proba(texts[:1])[0], expected, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in clf.model_.parameters())


def test_lora_tuning_learns_the_labels_and_the_run_reloads_with_its_prompt(tiny_llama_dir: Path,
                                                                            tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(16, seed=2)
    clf = TransferClassifier(backbone=f"hf:{tiny_llama_dir}", strategy="label_words", epochs=10, lr=1e-2,
                             progress=False, val_fraction=0.2, patience=None,
                             strategy_params={"words": ("neg=no", "pos=yes"), "template": "{text} is it {labels} ?"})
    clf.fit(texts, labels)
    assert clf.strategy_info_["label_words"] == {"neg": "no", "pos": "yes"} and clf.strategy_info_["adapter"] == "lora"
    test_texts, test_labels = support.sentiment_texts(10, seed=5)
    assert np.mean(clf.predict(test_texts) == np.array(test_labels)) >= 0.8
    reloaded = load(clf.save(tmp_path / "run"))
    np.testing.assert_allclose(reloaded.predict_proba(test_texts), clf.predict_proba(test_texts), rtol=1e-5,
                               atol=1e-6)


def test_label_words_refuses_encoders_and_words_that_cannot_be_told_apart(tiny_bert_dir: Path,
                                                                          tiny_llama_dir: Path) -> None:
    texts, labels = support.sentiment_texts(4)
    with pytest.raises(ConfigError, match="label_words needs a decoder"):
        TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="label_words", progress=False).fit(texts, labels)
    with pytest.raises(ConfigError, match="start with the same token"):
        TransferClassifier(backbone=f"hf:{tiny_llama_dir}", strategy="label_words", progress=False,
                           strategy_params={"words": ("neg=film", "pos=film"), "zero_shot": True}).fit(texts, labels)
    with pytest.raises(ConfigError, match="names no class"):
        label_words(["neg", "pos"], ("bad=awful",))
    assert label_words(["neg", "pos"], ("pos=great",)) == ["neg", "great"]
