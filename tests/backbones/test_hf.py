"""Transformers text backbones: pooling options."""

from pathlib import Path

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.errors import BackboneError

SENTENCES = ["a short sentence", "another, somewhat longer sentence with more tokens in it"]


@torch.no_grad()
def test_normalize_gives_unit_embeddings_in_the_same_direction(tiny_bert_dir: Path) -> None:
    plain = create_backbone(f"hf:{tiny_bert_dir}").eval()
    unit = create_backbone(f"hf:{tiny_bert_dir}", normalize=True).eval()
    raw = plain.forward_features(**plain.collate(SENTENCES))  # (2, D)
    normed = unit.forward_features(**unit.collate(SENTENCES))
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(normed, raw / raw.norm(dim=-1, keepdim=True))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2))


def test_minilm_is_normalised_by_default_and_says_so_in_its_spec() -> None:
    backbone = create_backbone("minilm")
    assert backbone.spec.options["normalize"] is True  # keys the feature cache apart from unnormalised runs
    assert create_backbone("minilm", normalize=False).spec.options["normalize"] is False


def test_unknown_pooling_is_refused(tiny_bert_dir: Path) -> None:
    with pytest.raises(BackboneError, match="pooling"):
        create_backbone(f"hf:{tiny_bert_dir}", pooling="max")
