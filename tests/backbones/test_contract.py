"""Every registered backbone honours the same contract (timm tests every model the same way)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.backbones import BACKBONES, Backbone, BackboneSpec, create_backbone
from transferkit.backbones.base import OUTPUTS, FeatureMaps, TokenFeatures, resolve_entry, weights_installed
from transferkit.backbones.gguf import SMOLLM2_INSTALL
from transferkit.backbones.zoo import MPNET_INSTALL
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
def specs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path,
          tiny_llama_dir: Path) -> dict[str, BackboneSpec]:
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
        "ge2e_speaker": BackboneSpec("ge2e_speaker", pretrained=False),
        "timm:": BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}),
        "hf:": BackboneSpec(f"hf:{tiny_bert_dir}"),
        "hf:vision": BackboneSpec(f"hf:{tiny_vit_dir(root)}"),
        "hf:audio": BackboneSpec(f"hf:{tiny_wav2vec2_dir(root)}"),
        "local:": BackboneSpec(f"local:{run}"),
        "lenet": BackboneSpec("lenet", pretrained=False, options={"width": 4}),
        "smollm2_135m": BackboneSpec("smollm2_135m", pretrained=False, options={"max_length": 16}),
        "hf:decoder": BackboneSpec(f"hf:{tiny_llama_dir}"),
    }


def raw_items(modality: str) -> list:
    rng = np.random.default_rng(0)
    if modality == "image":
        return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(3)]
    if modality == "text":
        return ["good film", "a very boring plot was terrible", "the"]
    return [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 8000, 5600)]


def test_every_registered_entry_has_a_tiny_spec(specs: dict[str, BackboneSpec]) -> None:
    names = set(BACKBONES.names())
    covered = {key.split("vision")[0].split("audio")[0].split("decoder")[0] for key in specs}
    assert names <= covered


# The outputs each entry declares: a change here is a change of the contract, so it is spelled out.
DECLARED = {
    "efficientnet_lite0": {"pooled", "feature_maps"},
    "efficientnet_lite1": {"pooled", "feature_maps"},
    "efficientnet_lite2": {"pooled", "feature_maps"},
    "minilm": {"pooled", "tokens"},
    "mpnet": {"pooled", "tokens"},
    "whisper_tiny_en": {"pooled", "tokens"},
    "whisper_base": {"pooled", "tokens"},
    "ge2e_speaker": {"pooled"},
    "timm:": {"pooled", "feature_maps"},
    "hf:": {"pooled", "tokens"},
    "hf:vision": {"pooled"},
    "hf:audio": {"pooled", "tokens"},
    "local:": {"pooled", "tokens"},
    "lenet": {"pooled"},
    "smollm2_135m": {"pooled", "tokens"},
    "hf:decoder": {"pooled", "tokens"},
}
# optional weights package (CI installs it); its install hint is tested in test_mpnet.py
_MPNET = pytest.mark.skipif(not weights_installed(resolve_entry("mpnet")),
                            reason=f"mpnet weights not installed: {MPNET_INSTALL}")
_SMOLLM2 = pytest.mark.skipif(not weights_installed(resolve_entry("smollm2_135m")),
                              reason=f"smollm2_135m weights not installed: {SMOLLM2_INSTALL}")
_OPTIONAL = {"mpnet": _MPNET, "smollm2_135m": _SMOLLM2}
KEYS = [pytest.param(key, marks=_OPTIONAL[key]) if key in _OPTIONAL else key for key in DECLARED]


def keys_giving(output: str) -> list:
    return [pytest.param(key, marks=_OPTIONAL[key]) if key in _OPTIONAL else key
            for key, outputs in DECLARED.items() if output in outputs]


@pytest.fixture(scope="module")
def built(specs: dict[str, BackboneSpec]) -> Callable[[str], Backbone]:
    """Each entry's backbone, built once for the module (mpnet's archive takes seconds to read)."""
    cache: dict[str, Backbone] = {}

    def get(key: str) -> Backbone:
        if key not in cache:
            cache[key] = create_backbone(specs[key])
        backbone = cache[key]
        backbone.zero_grad(set_to_none=True)
        return backbone

    return get


@pytest.mark.parametrize("key", KEYS)
def test_backbone_contract(specs: dict[str, BackboneSpec], built: Callable[[str], Backbone], key: str) -> None:
    backbone = built(key)
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

    described = json.loads(json.dumps(backbone.describe()))  # JSON-serialisable for run directories
    assert described["outputs"] == sorted(DECLARED[key])
    # the registry entry lists what its backbones give: exactly, for a zoo entry; at least, for a source
    entry = resolve_entry(backbone.spec.name)
    assert set(backbone.outputs) <= set(entry.outputs)
    if not entry.name.endswith(":"):
        assert set(entry.outputs) == set(backbone.outputs)


def groups_get_gradients(backbone: Backbone, groups: list[tuple[str, torch.nn.Module]]) -> None:
    for name, module in groups:
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        if grads:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient in {name}"


@pytest.mark.parametrize("key", KEYS)
def test_declared_outputs_and_the_error_for_the_others(built: Callable[[str], Backbone], key: str) -> None:
    backbone = built(key)
    assert set(backbone.outputs) == DECLARED[key]
    batch = backbone.collate([backbone.transform(item) for item in raw_items(backbone.modality)])
    calls = {"tokens": backbone.forward_tokens, "feature_maps": backbone.forward_feature_maps}
    for output in sorted(set(OUTPUTS) - DECLARED[key]):
        given = ", ".join(o for o in OUTPUTS if o in DECLARED[key])
        message = f"backbone {backbone.spec.name!r} gives no {output!r} output; it gives: {given}"
        with pytest.raises(BackboneError) as raised:
            calls[output](**batch)
        assert str(raised.value) == message
        with pytest.raises(BackboneError, match="it gives: pooled"):
            backbone.require_output(output)
    for output in DECLARED[key]:
        backbone.require_output(output)
    with pytest.raises(BackboneError, match="'logits' is not a backbone output"):
        backbone.require_output("logits")


@pytest.mark.parametrize("key", keys_giving("tokens"))
def test_tokens_are_what_the_pooled_features_pool(built: Callable[[str], Backbone], key: str) -> None:
    backbone = built(key).eval()
    items = raw_items(backbone.modality)  # of different lengths: the batch is padded
    batch = backbone.collate([backbone.transform(item) for item in items])
    with torch.no_grad():
        tokens = backbone.forward_tokens(**batch)
        pooled = backbone.forward_features(**batch)
    assert isinstance(tokens, TokenFeatures)
    batch_size, length, width = tokens.features.shape
    assert (batch_size, width) == (len(items), backbone.num_features)
    assert tokens.features.dtype == torch.float32 and tokens.mask.dtype == torch.bool
    assert tokens.mask.shape == (batch_size, length)
    real = tokens.mask.sum(1)
    assert (real >= 1).all() and real.max() == length and real.min() < length  # padding is masked out
    assert torch.isfinite(tokens.features[tokens.mask]).all()
    torch.testing.assert_close(backbone.pool(tokens), pooled, rtol=0, atol=0)

    # gradients reach the input side through the real tokens alone
    backbone.train()
    train_batch = backbone.collate([backbone.transform(item, train=True) for item in items])
    trained = backbone.forward_tokens(**train_batch)
    trained.features[trained.mask].pow(2).mean().backward()
    groups = backbone.layer_groups()
    groups_get_gradients(backbone, [groups[0], groups[-1]])


# Encoders whose padded positions cannot reach the real ones. (wav2vec2's default group norm spans the
# padding: transformers documents that such models take no attention mask, so padding there is not inert.)
@pytest.mark.parametrize("key", [k for k in keys_giving("tokens") if getattr(k, "values", (k,))[0] != "hf:audio"])
def test_token_mask_covers_exactly_what_padding_leaves_unchanged(built: Callable[[str], Backbone], key: str) -> None:
    backbone = built(key).eval()
    samples = [backbone.transform(item) for item in raw_items(backbone.modality)]
    with torch.no_grad():
        together = backbone.forward_tokens(**backbone.collate(samples))
        for row, sample in enumerate(samples):
            alone = backbone.forward_tokens(**backbone.collate([sample]))
            assert alone.mask.all()
            count = alone.mask.shape[1]
            assert together.mask[row].sum() == count and together.mask[row, :count].all()
            torch.testing.assert_close(together.features[row, :count], alone.features[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", keys_giving("feature_maps"))
def test_feature_maps_have_the_declared_strides_and_channels(built: Callable[[str], Backbone], key: str) -> None:
    from torchvision.ops import FeaturePyramidNetwork

    backbone = built(key).eval()
    strides, channels = backbone.feature_strides, backbone.feature_channels
    assert len(strides) == len(channels) >= 1 and list(strides) == sorted(set(strides)) and strides[0] >= 4
    height, width = 2 * strides[-1], 3 * strides[-1]  # not square: rows and columns are checked apart
    pixels = torch.randn(2, 3, height, width)
    with torch.no_grad():
        maps = backbone.forward_feature_maps(pixel_values=pixels)
    assert isinstance(maps, FeatureMaps)
    assert (maps.strides, maps.channels) == (strides, channels)
    levels = list(zip(strides, channels, strict=True))
    assert [tuple(m.shape) for m in maps.maps] == [(2, c, height // s, width // s) for s, c in levels]
    assert all(m.dtype == torch.float32 and torch.isfinite(m).all() for m in maps.maps)

    # the batch the backbone's own preprocessing makes
    batch = backbone.collate([backbone.transform(item) for item in raw_items("image")])
    side = batch["pixel_values"].shape[-1]
    with torch.no_grad():
        own = backbone.forward_feature_maps(**batch)
    assert [m.shape[-1] for m in own.maps] == [-(-side // s) for s in strides]

    # torchvision's feature pyramid takes them as they are
    fpn = FeaturePyramidNetwork(list(channels), out_channels=16)
    pyramid = fpn(maps.as_dict())
    assert [tuple(p.shape) for p in pyramid.values()] == [(2, 16, height // s, width // s) for s in strides]

    # gradients flow from the maps to the input side (the head convolution after the last level gets none)
    backbone.train()
    trained = backbone.forward_feature_maps(pixel_values=pixels)
    sum(m.pow(2).mean() for m in trained.maps).backward()
    groups_get_gradients(backbone, backbone.layer_groups()[:1])


def test_unknown_backbone_names_the_value() -> None:
    with pytest.raises(BackboneError, match="no_such_net"):
        create_backbone("no_such_net")


def test_unknown_timm_model_is_a_backbone_error() -> None:
    with pytest.raises(BackboneError, match="not_a_timm_model"):
        create_backbone("timm:not_a_timm_model", pretrained=False)


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone(f"local:{tmp_path / 'nope'}")


def test_an_entry_must_give_pooled_features_and_known_outputs() -> None:
    from transferkit.backbones.base import BackboneEntry

    def factory(spec: BackboneSpec) -> Backbone:
        raise AssertionError("never built")

    for outputs in (("tokens",), ("pooled", "logits")):
        with pytest.raises(ValueError, match="must include 'pooled'"):
            BackboneEntry("net", factory, "image", "a net", True, outputs=outputs)
