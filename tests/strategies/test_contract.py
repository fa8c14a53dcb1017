"""Every registered strategy fits, predicts above chance, and reloads to the same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import support
from transferkit import TransferClassifier, load
from transferkit.strategies import STRATEGIES

# LoRA's updates start at zero; on a random 32-wide BERT they need a higher rate than full fine-tuning
LEARNING_RATE = {"lora": 5e-3}


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_strategy_contract(strategy: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(24, seed=2)
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy=strategy, epochs=10,
                             lr=LEARNING_RATE.get(strategy, 2e-3), progress=False, val_fraction=0.2)
    assert clf.fit(texts, labels) is clf
    test_texts, test_labels = support.sentiment_texts(10, seed=5)
    assert np.mean(clf.predict(test_texts) == np.array(test_labels)) >= 0.7
    proba = clf.predict_proba(test_texts)
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    reloaded = load(clf.save(tmp_path / strategy))
    np.testing.assert_allclose(reloaded.predict_proba(test_texts), proba, rtol=1e-5, atol=1e-6)
