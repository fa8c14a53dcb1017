"""LP-FT: the head starts from the linear probe, then everything is fine-tuned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import support
from transferkit import TransferClassifier
from transferkit.strategies.linear_probe import linear_probe


def test_lp_ft_starts_from_the_probe_head_and_trains_the_backbone(tiny_bert_dir: Path, monkeypatch) -> None:
    texts, labels = support.sentiment_texts(16, seed=1)
    heads: list[torch.Tensor] = []

    def spy(model, data, config, params):  # record the head the probe hands to fine-tuning
        outcome = linear_probe(model, data, config, params)
        heads.append(model.head.fc.weight.detach().clone())
        return outcome

    monkeypatch.setattr("transferkit.strategies.linear_probe.linear_probe", spy)
    name = f"hf:{tiny_bert_dir}"
    clf = TransferClassifier(backbone=name, strategy="lp_ft", epochs=2, lr=1e-3, progress=False, val_fraction=0.2)
    clf.fit(texts, labels)
    assert len(heads) == 1
    assert "probe_c" in clf.strategy_info_ and clf.strategy_info_["lr"] == 5e-4  # half the given rate
    assert clf.backbone_trained_ and len(clf.history_) >= 1
    before = TransferClassifier(backbone=name, progress=False).fit(texts, labels).model_.backbone.state_dict()
    after = clf.model_.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if after[k].is_floating_point())
    test_texts, test_labels = support.sentiment_texts(10, seed=7)
    assert np.mean(clf.predict(test_texts) == np.array(test_labels)) >= 0.7
