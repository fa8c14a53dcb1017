"""LoRA: which layers are adapted, only adapters and head train, and an adapter-only run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import support
import transferkit
from transferkit import TransferClassifier
from transferkit.artifact import ADAPTER, MANIFEST, base_weights_sha256
from transferkit.backbones import Backbone, BackboneSpec, create_backbone
from transferkit.data import samples_from_arrays
from transferkit.errors import ArtifactError, ConfigError
from transferkit.features import extract_features
from transferkit.heads import LinearHead, TransferModel
from transferkit.strategies.lora import LoraSettings, apply_lora, lora_param_groups, lora_targets

IMAGE_SPEC = {"backbone": "timm:test_efficientnet", "pretrained": False, "backbone_options": {"image_size": 32}}


def leaf_names(targets: dict[str, int]) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in targets}


def initial_image_backbone(seed: int = 0) -> Backbone:
    """The random backbone that ``fit`` starts from (it seeds torch before building it)."""
    torch.manual_seed(seed)
    return create_backbone(
        BackboneSpec(IMAGE_SPEC["backbone"], pretrained=False, options=IMAGE_SPEC["backbone_options"])
    )


def run_size(run: Path) -> int:
    return sum(f.stat().st_size for f in run.iterdir() if f.is_file())


# -- targets -------------------------------------------------------------------------------------


def test_transformers_adapt_the_query_and_value_projections(tiny_bert_dir: Path) -> None:
    bert = create_backbone(f"hf:{tiny_bert_dir}")
    assert leaf_names(lora_targets(bert, rank=8)) == {"query", "value"}
    whisper = create_backbone("whisper_tiny_en", pretrained=False)
    targets = lora_targets(whisper, rank=8)
    assert leaf_names(targets) == {"q_proj", "v_proj"} and len(targets) == 2 * 4  # 4 encoder layers
    vit = create_backbone("timm:test_vit", pretrained=False)
    assert leaf_names(lora_targets(vit, rank=8)) == {"qkv"}


def test_cnns_adapt_dense_convolutions_but_not_depthwise_ones() -> None:
    backbone = initial_image_backbone()
    targets = lora_targets(backbone, rank=8)
    modules = dict(backbone.named_modules())
    assert {"conv_pw", "conv_pwl", "conv_head"} <= leaf_names(targets)
    assert all(modules[name].groups == 1 for name in targets)
    assert not any(name.endswith("conv_dw") for name in targets)
    assert "model.conv_stem" not in targets  # 3 input channels: no smaller than the rank


def test_first_group_restricts_the_targets_to_the_last_layer_groups(tiny_bert_dir: Path) -> None:
    bert = create_backbone(f"hf:{tiny_bert_dir}")
    groups = [name for name, _ in bert.layer_groups()]
    assert groups[:3] == ["stem", "block0", "block1"]
    last = lora_targets(bert, rank=8, first_group=2)
    assert set(last.values()) == {2} and leaf_names(last) == {"query", "value"}
    assert all(".layer.1." in name for name in last)


def test_adapters_and_head_are_the_only_optimized_parameters(tiny_bert_dir: Path) -> None:
    backbone = create_backbone(f"hf:{tiny_bert_dir}")
    targets = lora_targets(backbone, rank=8)
    apply_lora(backbone, list(targets), LoraSettings())
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2))
    groups = lora_param_groups(model, targets, lr=1e-3, layer_decay=0.5, head_lr_scale=10.0, weight_decay=0.01)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == pytest.approx({"block0": 5e-4, "block1": 1e-3, "head": 1e-2})
    optimized = {id(p) for g in groups for p in g["params"]}
    adapters = {id(p) for n, p in backbone.named_parameters() if ".lora_" in n}
    expected = adapters | {id(p) for p in model.head.parameters()}
    assert optimized == expected
    assert {id(p) for p in model.parameters() if p.requires_grad} == expected


def test_a_backbone_without_plain_layers_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import transferkit.strategies.lora as lora_module

    images, labels = support.blob_images(4)
    # as if every convolution padded in forward, which PEFT's adapter convolutions would miss
    monkeypatch.setattr(lora_module, "_adaptable_conv", lambda module: False)
    clf = TransferClassifier(backbone="efficientnet_lite0", pretrained=False, backbone_options={"image_size": 32},
                             strategy="lora", progress=False)
    with pytest.raises(ConfigError, match="no nn.Linear or plain nn.Conv2d"):
        clf.fit(images, labels)


def test_efficientnet_lite_adapts_its_pointwise_convolutions_without_changing_the_function() -> None:
    """The 1x1 convolutions become plain ``nn.Conv2d`` (PEFT can wrap those); features stay the library's."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", pretrained=False, image_size=64).eval()
    library = EfficientNet.from_name("efficientnet-lite0", num_classes=1000).eval()
    library.load_state_dict(backbone.net.state_dict())  # same keys: the swap adds and drops no parameter
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = library.extract_features(pixels).mean(dim=(2, 3))
        torch.testing.assert_close(backbone.forward_features(pixel_values=pixels), expected)
    targets = lora_targets(backbone, rank=8)
    assert len(targets) >= 30 and all(name.endswith(("_expand_conv", "_project_conv", "_conv_head"))
                                      for name in targets)


def test_train_last_k_out_of_range_is_a_config_error(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(4)
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="lora", strategy_params={"train_last_k": 99},
                             progress=False)
    with pytest.raises(ConfigError, match="train_last_k=99"):
        clf.fit(texts, labels)


def test_freeze_bn_false_is_a_config_error() -> None:
    images, labels = support.blob_images(4)
    clf = TransferClassifier(**IMAGE_SPEC, strategy="lora", freeze_bn=False, progress=False)
    with pytest.raises(ConfigError, match="BatchNorm"):
        clf.fit(images, labels)


def test_whisper_accepts_lora_and_backpropagates_into_the_adapters_only() -> None:
    backbone = create_backbone("whisper_tiny_en", pretrained=False)
    targets = lora_targets(backbone, rank=8)
    apply_lora(backbone, list(targets), LoraSettings())
    waves, _ = support.tone_waves(2)
    batch = backbone.collate([backbone.transform(w, train=True) for w in waves])
    backbone.train()
    features = backbone.forward_features(**batch)  # (B, D)
    assert features.shape == (4, 384)
    features.pow(2).mean().backward()
    trainable = {n: p for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    # B starts at zero, so the first gradient reaches B (A's gradient is B^T times something)
    lora_b = [p for n, p in trainable.items() if ".lora_B." in n]
    assert len(lora_b) == len(targets) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    assert all(p.grad is None for n, p in backbone.named_parameters() if not p.requires_grad)


# -- fitting, saving, loading ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str], list[str], list[str]]:
    return (*support.sentiment_texts(40, seed=0), *support.sentiment_texts(20, seed=1))


@pytest.fixture(scope="module")
def text_lora(tiny_bert_dir: Path, texts: tuple) -> TransferClassifier:
    x, y, _, _ = texts
    # a random 32-wide BERT needs more steps than a pretrained one: small batches, no held-out split
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="lora", lr=5e-3, epochs=8, batch_size=8,
                             val_fraction=0.0, progress=False)
    return clf.fit(x, y)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    return (*support.blob_images(16, seed=0), *support.blob_images(16, seed=1))


@pytest.fixture(scope="module")
def image_lora(blobs: tuple) -> TransferClassifier:
    images, labels, _, _ = blobs
    return TransferClassifier(**IMAGE_SPEC, strategy="lora", epochs=6, batch_size=8, progress=False).fit(images, labels)


def test_lora_on_text_trains_adapters_and_head_only(text_lora: TransferClassifier, tiny_bert_dir: Path,
                                                    texts: tuple) -> None:
    _, _, x_test, y_test = texts
    info = text_lora.strategy_info_
    assert info["adapter"] == "lora" and info["lora_targets"] == ["query", "value"] and info["lora_layers"] == 4
    assert text_lora.backbone_trained_ is True  # its features are not the pretrained ones
    backbone = text_lora.model_.backbone
    adapters = sum(p.numel() for n, p in backbone.named_parameters() if ".lora_" in n)
    head = sum(p.numel() for p in text_lora.model_.head.parameters())
    assert info["trainable_params"] == adapters + head
    assert info["total_params"] == sum(p.numel() for p in text_lora.model_.parameters())
    assert info["trainable_params"] / info["total_params"] < 0.15  # a 32-wide BERT; MiniLM: 0.3 %
    # the base weights are exactly the pretrained ones; the adapters moved
    assert base_weights_sha256(backbone) == base_weights_sha256(create_backbone(f"hf:{tiny_bert_dir}"))
    assert all(p.abs().sum() > 0 for n, p in backbone.named_parameters() if ".lora_B." in n)
    losses = [row["train_loss"] for row in text_lora.history_]
    assert losses[-1] < losses[0]
    assert text_lora.score(x_test, y_test) >= 0.8


def test_lora_on_a_cnn_keeps_weights_and_batchnorm_statistics(image_lora: TransferClassifier, blobs: tuple) -> None:
    _, _, test_images, test_labels = blobs
    initial = initial_image_backbone()
    assert base_weights_sha256(image_lora.model_.backbone) == base_weights_sha256(initial)
    assert image_lora.strategy_info_["freeze_bn"] is True
    assert image_lora.strategy_info_["trainable_params"] / image_lora.strategy_info_["total_params"] < 0.25
    assert image_lora.score(test_images, test_labels) >= 0.85


def test_predictions_never_read_cached_pretrained_features(text_lora: TransferClassifier, tiny_bert_dir: Path,
                                                           texts: tuple) -> None:
    _, _, x_test, _ = texts
    samples = samples_from_arrays(x_test, None)
    pretrained = extract_features(create_backbone(f"hf:{tiny_bert_dir}"), samples, progress=False)  # now cached
    adapted = extract_features(text_lora.model_.backbone, samples, use_cache=False, progress=False)
    assert not np.allclose(pretrained, adapted, atol=1e-4)
    with torch.inference_mode():
        expected = torch.softmax(text_lora.model_.head(torch.from_numpy(adapted)), dim=-1).numpy()
    np.testing.assert_allclose(text_lora.predict_proba(x_test), expected, rtol=1e-5, atol=1e-6)


def test_the_run_directory_holds_the_adapter_only(text_lora: TransferClassifier, texts: tuple, tmp_path: Path) -> None:
    _, _, x_test, _ = texts
    run = text_lora.save(tmp_path / "run")
    assert (run / ADAPTER).is_file() and (run / "head.safetensors").is_file()
    assert not (run / "backbone.safetensors").exists()
    manifest = json.loads((run / MANIFEST).read_text())
    adapter = manifest["adapter"]
    assert adapter["method"] == "lora" and manifest["backbone_trained"] is True
    config = adapter["peft_config"]
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    assert sorted(config["target_modules"]) == sorted(lora_targets(create_backbone(manifest["backbone"]["name"]),
                                                                   rank=8))
    loaded = transferkit.load(run)
    assert loaded.backbone_trained_ is True
    np.testing.assert_array_equal(loaded.predict_proba(x_test), text_lora.predict_proba(x_test))
    # and a loaded LoRA model saves adapter-only again
    again = loaded.save(tmp_path / "again")
    assert (again / ADAPTER).is_file() and not (again / "backbone.safetensors").exists()


def test_a_random_backbone_is_rebuilt_from_its_seed_and_the_run_is_far_smaller_than_finetuning(
    image_lora: TransferClassifier, blobs: tuple, tmp_path: Path
) -> None:
    images, labels, test_images, _ = blobs
    run = image_lora.save(tmp_path / "lora")
    assert not (run / "backbone.safetensors").exists()
    np.testing.assert_array_equal(transferkit.load(run).predict_proba(test_images),
                                  image_lora.predict_proba(test_images))
    finetuned = TransferClassifier(**IMAGE_SPEC, strategy="finetune", epochs=1, batch_size=16, progress=False)
    full = finetuned.fit(images, labels).save(tmp_path / "finetune")
    assert run_size(run) < 0.3 * run_size(full)


def test_an_adapter_on_other_base_weights_is_refused(text_lora: TransferClassifier, tmp_path: Path) -> None:
    run = text_lora.save(tmp_path / "run")
    manifest = json.loads((run / MANIFEST).read_text())
    manifest["adapter"]["base_sha256"] = "0" * 64
    (run / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="other weights than the ones its adapter was trained on"):
        transferkit.load(run)


def test_lora_on_a_lora_run_directory_is_a_config_error(text_lora: TransferClassifier, texts: tuple,
                                                        tmp_path: Path) -> None:
    x, y, _, _ = texts
    run = text_lora.save(tmp_path / "run")
    with pytest.raises(ConfigError, match="already carries a LoRA adapter"):
        TransferClassifier(backbone=str(run), strategy="lora", progress=False).fit(x, y)


def test_rank_alpha_and_target_modules_are_settable(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(6)

    def fit(**params: object) -> TransferClassifier:
        return TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="lora", epochs=1, progress=False,
                                  val_fraction=0.0, strategy_params=params).fit(texts, labels)

    head = 32 * 2 + 2  # the tiny BERT is 32 wide; two classes
    default, small, query_only = fit(), fit(r=2, alpha=4), fit(target_modules="query")
    # an adapted 32 x 32 projection gains r * (32 + 32) weights; two layers, query and value in each
    assert default.strategy_info_["trainable_params"] == head + 4 * 8 * 64
    assert small.strategy_info_["trainable_params"] == head + 4 * 2 * 64
    adapter = small.model_.backbone.peft_config["default"]
    assert (adapter.r, adapter.lora_alpha) == (2, 4)
    assert query_only.strategy_info_["lora_targets"] == ["query"]
    assert query_only.strategy_info_["trainable_params"] == head + 2 * 8 * 64
    with pytest.raises(ConfigError, match="no nn.Linear or plain nn.Conv2d named nope"):
        fit(target_modules="nope")
    with pytest.raises(ConfigError, match="has no setting 'rank'; its settings are r, alpha, dropout"):
        fit(rank=4)
