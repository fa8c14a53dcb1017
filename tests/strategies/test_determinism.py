"""The same seed gives the same metrics, history and predictions, for every registered strategy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import support
from transferkit import TransferClassifier
from transferkit.strategies import STRATEGIES


def fitted(strategy: str, model_dir: Path, seed: int) -> TransferClassifier:
    texts, labels = support.sentiment_texts(10, seed=3)
    return TransferClassifier(backbone=f"hf:{model_dir}", strategy=strategy, epochs=2, lr=2e-3, batch_size=8,
                              seed=seed, progress=False, val_fraction=0.2).fit(texts, labels)


DECODER_ONLY = {"label_words"}  # classes as words a decoder writes: run on the tiny Llama


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_the_same_seed_gives_the_same_metrics(strategy: str, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue("tiny_llama_dir" if strategy in DECODER_ONLY else "tiny_bert_dir")
    first, second = fitted(strategy, model_dir, seed=7), fitted(strategy, model_dir, seed=7)
    assert first.validation_metrics_ == second.validation_metrics_
    assert first.history_ == second.history_
    test_texts, _ = support.sentiment_texts(5, seed=9)
    np.testing.assert_array_equal(first.predict_proba(test_texts), second.predict_proba(test_texts))
