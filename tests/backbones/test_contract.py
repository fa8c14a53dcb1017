"""Every registered backbone honours the same contract (timm tests every model the same way)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.backbones import BackboneSpec, create_backbone, registered_backbones
from transferkit.backbones.base import resolve_entry, weights_installed
from transferkit.errors import BackboneError


def tiny_vit_dir(root: Path) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = root / "tiny_vit"
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_wav2vec2_dir(root: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = root / "tiny_w2v"
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=10,
    )
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict[str, BackboneSpec]:
    """One tiny spec per registry entry (zoo entries built with random weights)."""
    root = tmp_path_factory.mktemp("contract")
    from support import sentiment_texts
    from transferkit import TransferClassifier

    texts, labels = sentiment_texts(6)
    run = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False).fit(texts, labels).save(root / "run")
    return {
        "efficientnet_lite0": BackboneSpec("efficientnet_lite0", pretrained=False, options={"image_size": 64}),
        "efficientnet_lite1": BackboneSpec("efficientnet_lite1", pretrained=False, options={"image_size": 64}),
        "efficientnet_lite2": BackboneSpec("efficientnet_lite2", pretrained=False, options={"image_size": 64}),
        "minilm": BackboneSpec("minilm", pretrained=False, options={"max_length": 16}),
        "mpnet": BackboneSpec("mpnet", pretrained=False, options={"max_length": 16}),
        "whisper_tiny_en": BackboneSpec("whisper_tiny_en", pretrained=False),
        "whisper_base": BackboneSpec("whisper_base", pretrained=False),
        "timm:": BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}),
        "hf:": BackboneSpec(f"hf:{tiny_bert_dir}"),
        "hf:vision": BackboneSpec(f"hf:{tiny_vit_dir(root)}"),
        "hf:audio": BackboneSpec(f"hf:{tiny_wav2vec2_dir(root)}"),
        "local:": BackboneSpec(f"local:{run}"),
        "lenet": BackboneSpec("lenet", pretrained=False, options={"width": 4}),
    }


def raw_items(modality: str) -> list:
    rng = np.random.default_rng(0)
    if modality == "image":
        return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(3)]
    if modality == "text":
        return ["good film", "a very boring plot was terrible", "the"]
    return [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 8000, 5600)]


def test_every_registered_entry_has_a_tiny_spec(specs: dict[str, BackboneSpec]) -> None:
    names = {entry.name for entry in registered_backbones()}
    covered = {key.split("vision")[0].split("audio")[0] for key in specs}
    assert names <= covered


@pytest.mark.parametrize(
    "key",
    ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm",
     # optional weights package (CI installs it); its install hint is tested in test_mpnet.py
     pytest.param("mpnet", marks=pytest.mark.skipif(
         not weights_installed(resolve_entry("mpnet")), reason="mpnet weights not installed")),
     "whisper_tiny_en", "whisper_base", "timm:", "hf:", "hf:vision", "hf:audio", "local:", "lenet"],
)
def test_backbone_contract(specs: dict[str, BackboneSpec], key: str) -> None:
    backbone = create_backbone(specs[key])
    given = specs[key]
    assert (backbone.spec.name, backbone.spec.pretrained) == (given.name, given.pretrained)
    assert given.options.items() <= backbone.spec.options.items()  # defaults may be filled in, never changed
    assert create_backbone(backbone.spec).spec == backbone.spec  # the filled-in spec rebuilds the same backbone
    assert backbone.modality in ("image", "text", "audio")
    items = raw_items(backbone.modality)
    batch = backbone.collate([backbone.transform(item, train=False) for item in items])
    backbone.eval()
    features = backbone.forward_features(**batch)
    assert features.shape == (len(items), backbone.num_features)
    assert torch.isfinite(features).all()

    # layer groups: input side first, every trainable parameter in exactly one group
    groups = backbone.layer_groups()
    assert len(groups) >= 2
    assert len({name for name, _ in groups}) == len(groups)
    owners: dict[int, str] = {}
    for name, module in groups:
        for p in module.parameters():
            assert id(p) not in owners, f"parameter in both {owners[id(p)]} and {name}"
            owners[id(p)] = name
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    assert all(id(p) in owners for p in trainable)

    # gradients reach the first and the last group
    backbone.train()
    train_batch = backbone.collate([backbone.transform(item, train=True) for item in items])
    backbone.forward_features(**train_batch).pow(2).mean().backward()
    for name, module in (groups[0], groups[-1]):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        if grads:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient in {name}"

    json.dumps(backbone.describe())  # JSON-serialisable for run directories


def test_unknown_backbone_names_the_value() -> None:
    with pytest.raises(BackboneError, match="no_such_net"):
        create_backbone("no_such_net")


def test_unknown_timm_model_is_a_backbone_error() -> None:
    with pytest.raises(BackboneError, match="not_a_timm_model"):
        create_backbone("timm:not_a_timm_model", pretrained=False)


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone(f"local:{tmp_path / 'nope'}")
