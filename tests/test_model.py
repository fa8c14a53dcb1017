"""build_model: a task's head on the backbone output it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.backbones import create_backbone
from transferkit.errors import BackboneError
from transferkit.model import build_model
from transferkit.tasks import Classification


class TokenClassification(Classification):
    """A task reading token features (not registered: the token-level heads are not built yet)."""

    output = "tokens"


def test_a_task_on_an_output_the_backbone_lacks_names_what_it_has() -> None:
    task = TokenClassification().fit_targets(["a", "b"])
    with pytest.raises(BackboneError, match="backbone 'lenet' gives no 'tokens' output; it gives: pooled"):
        build_model(create_backbone("lenet", pretrained=False), task)


def test_a_backbone_giving_the_output_reaches_the_task(tiny_bert_dir: Path) -> None:
    text = create_backbone(f"hf:{tiny_bert_dir}")
    model = build_model(text, Classification().fit_targets(["a", "b"]))
    assert model.backbone is text and model.head.fc.in_features == text.num_features
