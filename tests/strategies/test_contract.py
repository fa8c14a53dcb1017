"""Every registered strategy fits, predicts above chance, and reloads to the same predictions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import support
from transferkit import TransferClassifier, load
from transferkit.errors import ConfigError
from transferkit.strategies import REGULARIZERS, STRATEGIES

# LoRA's updates start at zero; on a random 32-wide BERT they need a higher rate than full fine-tuning
LEARNING_RATE = {"lora": 5e-3, "label_words": 1e-2}
# strategies that need a decoder (they score the words it writes) run on a tiny random Llama
DECODER_ONLY = {"label_words"}
# a short prompt: the default one's words are unknown to the tiny model's vocabulary
STRATEGY_PARAMS = {"label_words": {"template": "{text} is it {labels} ?"}}


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_strategy_contract(strategy: str, tiny_bert_dir: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    texts, labels = support.sentiment_texts(24, seed=2)
    backbone = f"hf:{tiny_llama_dir if strategy in DECODER_ONLY else tiny_bert_dir}"
    clf = TransferClassifier(backbone=backbone, strategy=strategy, epochs=10,
                             lr=LEARNING_RATE.get(strategy, 2e-3), progress=False, val_fraction=0.2,
                             strategy_params=STRATEGY_PARAMS.get(strategy))
    assert clf.fit(texts, labels) is clf
    test_texts, test_labels = support.sentiment_texts(10, seed=5)
    assert np.mean(clf.predict(test_texts) == np.array(test_labels)) >= 0.7
    proba = clf.predict_proba(test_texts)
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    reloaded = load(clf.save(tmp_path / strategy))
    np.testing.assert_allclose(reloaded.predict_proba(test_texts), proba, rtol=1e-5, atol=1e-6)


def test_every_strategy_and_regularizer_has_a_config_class_with_checked_keys() -> None:
    entries = [*STRATEGIES, *REGULARIZERS]
    assert len(entries) == len(STRATEGIES) + len(REGULARIZERS) >= 11
    for entry in entries:
        config_class = entry.config
        assert dataclasses.is_dataclass(config_class) and config_class.__name__.endswith(("Config", "Settings"))
        assert entry.settings() == config_class()  # every field has a default
        keys = [f.name for f in dataclasses.fields(config_class)]
        with pytest.raises(ConfigError, match="no setting 'nope'") as caught:
            entry.settings({"nope": 1})
        assert all(key in str(caught.value) for key in keys)
        for key in keys:  # text, as --param gives it, becomes the field's type
            default = getattr(config_class(), key)
            if isinstance(default, int | float) and not isinstance(default, bool):
                assert getattr(entry.settings({key: str(default)}), key) == default
