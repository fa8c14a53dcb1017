"""Fine-tuning: layer-wise learning rates, partial fine-tuning, BatchNorm freezing, and learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import support
from transferkit import TransferClassifier
from transferkit.backbones import Backbone, BackboneSpec, create_backbone
from transferkit.data import samples_from_arrays
from transferkit.errors import ConfigError
from transferkit.heads import LinearHead, TransferModel
from transferkit.strategies import FitConfig, FitData, StrategyOutcome
from transferkit.strategies.finetune import fine_tune, layerwise_param_groups
from transferkit.train import TrainHooks

IMAGE_SPEC = {"backbone": "timm:test_efficientnet", "pretrained": False, "backbone_options": {"image_size": 32}}


class ThreeLayers(Backbone):
    """A stack of three linear layers with the backbone contract's layer groups."""

    modality = "image"
    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.spec = BackboneSpec("three_layers", pretrained=True)
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def forward_features(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [(f"layer{i}", layer) for i, layer in enumerate(self.layers)]


def three_layer_model() -> TransferModel:
    torch.manual_seed(0)
    backbone = ThreeLayers()
    return TransferModel(backbone, LinearHead(4, 2))


def lr_by_group(groups: list[dict]) -> dict[str, float]:
    rates: dict[str, set[float]] = {}
    for group in groups:
        rates.setdefault(group["name"], set()).add(group["lr"])
    assert all(len(r) == 1 for r in rates.values()), rates  # decay and no-decay halves share the rate
    return {name: r.pop() for name, r in rates.items()}


def test_learning_rates_decay_toward_the_input_and_the_head_is_scaled() -> None:
    model = three_layer_model()
    groups = layerwise_param_groups(
        model, lr=1e-3, layer_decay=0.5, train_last_k=None, head_lr_scale=10.0, weight_decay=0.05
    )
    rates = lr_by_group(groups)
    assert list(rates) == ["layer0", "layer1", "layer2", "head"]
    assert rates["layer2"] == pytest.approx(1e-3)
    assert rates["layer1"] == pytest.approx(5e-4)
    assert rates["layer0"] == pytest.approx(2.5e-4)
    assert rates["head"] == pytest.approx(1e-2)
    # every parameter once; weight decay on matrices only
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    for group in groups:
        assert group["weight_decay"] == (0.05 if all(p.ndim == 2 for p in group["params"]) else 0.0)
    assert all(p.requires_grad for p in model.parameters())


def test_train_last_k_freezes_the_earlier_groups() -> None:
    model = three_layer_model()
    groups = layerwise_param_groups(
        model, lr=1e-3, layer_decay=0.5, train_last_k=1, head_lr_scale=10.0, weight_decay=0.0
    )
    assert list(lr_by_group(groups)) == ["layer2", "head"]
    assert not any(p.requires_grad for layer in model.backbone.layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in model.backbone.layers[2].parameters())


@pytest.mark.parametrize("k", [0, 4, -1])
def test_invalid_train_last_k_is_a_config_error(k: int) -> None:
    with pytest.raises(ConfigError, match=f"train_last_k={k}.*3 layer groups"):
        layerwise_param_groups(
            three_layer_model(), lr=1e-3, layer_decay=1.0, train_last_k=k, head_lr_scale=1.0, weight_decay=0.0
        )


def test_invalid_train_last_k_fails_the_fit() -> None:
    images, labels = support.blob_images(4)
    clf = TransferClassifier(**IMAGE_SPEC, strategy="finetune", strategy_params={"train_last_k": 99}, progress=False)
    with pytest.raises(ConfigError, match="train_last_k=99"):
        clf.fit(images, labels)


def test_a_full_finetune_trains_every_backbone_parameter() -> None:
    # a ViT keeps cls_token and pos_embed on its root module, outside every block
    backbone = create_backbone("timm:test_vit", pretrained=False)
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2))
    groups = layerwise_param_groups(
        model, lr=1e-3, layer_decay=0.9, train_last_k=None, head_lr_scale=1.0, weight_decay=0.0
    )
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert [n for n, p in backbone.named_parameters() if id(p) not in in_groups] == []
    assert all(p.requires_grad for p in backbone.parameters())


def initial_image_backbone(seed: int = 0) -> Backbone:
    """The random backbone that ``fit`` starts from (it seeds torch before building it)."""
    torch.manual_seed(seed)
    return create_backbone(
        BackboneSpec(IMAGE_SPEC["backbone"], pretrained=False, options=IMAGE_SPEC["backbone_options"])
    )


def batch_norm_buffers(backbone: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in backbone.named_buffers() if "running_" in n}


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    helpers = support
    return (*helpers.blob_images(16, seed=0), *helpers.blob_images(16, seed=1))


@pytest.fixture(scope="module")
def finetuned(blobs: tuple) -> TransferClassifier:
    images, labels, _, _ = blobs
    return TransferClassifier(**IMAGE_SPEC, strategy="finetune", epochs=6, batch_size=8, progress=False, seed=0).fit(
        images, labels
    )


def test_finetune_learns_the_images(finetuned: TransferClassifier, blobs: tuple) -> None:
    _, _, test_images, test_labels = blobs
    assert finetuned.backbone_trained_ is True
    assert finetuned.score(test_images, test_labels) >= 0.85
    losses = [row["train_loss"] for row in finetuned.history_]
    assert losses[-1] < losses[0]
    assert finetuned.strategy_info_["best_epoch"] in range(1, len(losses) + 1)
    # from scratch: batch statistics are learned (freeze_bn defaults to pretrained)
    assert finetuned.strategy_info_["freeze_bn"] is False
    start = batch_norm_buffers(initial_image_backbone())
    after = batch_norm_buffers(finetuned.model_.backbone)
    assert any(not torch.equal(start[n], after[n]) for n in start)


def test_freeze_bn_keeps_running_statistics(blobs: tuple) -> None:
    images, labels, _, _ = blobs
    clf = TransferClassifier(
        **IMAGE_SPEC, strategy="finetune", epochs=1, batch_size=8, freeze_bn=True, progress=False
    ).fit(images, labels)
    start = batch_norm_buffers(initial_image_backbone())
    after = batch_norm_buffers(clf.model_.backbone)
    assert start.keys() == after.keys() and len(start) > 0
    assert all(torch.equal(start[n], after[n]) for n in start)
    # while the weights did train
    start_weights = dict(initial_image_backbone().named_parameters())
    assert any(not torch.equal(p, start_weights[n]) for n, p in clf.model_.backbone.named_parameters())


def test_train_last_k_leaves_earlier_groups_unchanged(blobs: tuple) -> None:
    images, labels, _, _ = blobs
    clf = TransferClassifier(
        **IMAGE_SPEC, strategy="finetune", epochs=2, batch_size=8, strategy_params={"train_last_k": 1}, progress=False
    ).fit(images, labels)
    before = initial_image_backbone().layer_groups()
    after = clf.model_.backbone.layer_groups()
    assert [n for n, _ in before] == [n for n, _ in after] and len(after) >= 3
    for (name, old), (_, new) in zip(before[:-1], after[:-1], strict=True):
        for p_old, p_new in zip(old.parameters(), new.parameters(), strict=True):
            assert torch.equal(p_old, p_new), f"{name} changed"
    last_old, last_new = list(before[-1][1].parameters()), list(after[-1][1].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(last_old, last_new, strict=True))


class OutOfMemoryAbove(TrainHooks):
    """Raises CUDA's out-of-memory error for batches larger than ``limit``, as a too-small GPU would."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def extra_loss(self, model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        if len(labels) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return None


def test_out_of_memory_halves_the_batch_until_it_fits_and_ends_as_a_run_at_that_size(blobs: tuple) -> None:
    images, labels, _, _ = blobs
    samples = samples_from_arrays(images, labels)
    data = FitData(train=samples, train_ids=[int(v == "tl") for v in labels], classes=["br", "tl"])

    def run(batch_size: int) -> tuple[TransferModel, StrategyOutcome]:
        torch.manual_seed(0)
        backbone = initial_image_backbone()
        model = TransferModel(backbone, LinearHead(backbone.num_features, 2))
        config = FitConfig(epochs=1, batch_size=batch_size, progress=False)
        return model, fine_tune(model, data, config, None, head_lr_scale=10.0, extra_hooks=(OutOfMemoryAbove(8),))

    with pytest.warns(UserWarning, match="out of memory") as caught:
        model, outcome = run(32)
    assert [str(w.message) for w in caught] == ["out of memory with batch size 32; retrying with 16",
                                                "out of memory with batch size 16; retrying with 8"]
    assert outcome.info["batch_size"] == 8
    # the failed attempts left no trace: the same as starting at 8
    expected_model, expected = run(8)
    assert outcome.history == expected.history
    for name, value in expected_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_adamw_is_fused_where_every_parameter_allows_it() -> None:
    from transferkit.strategies.run import fused_adamw

    on_cpu = [{"params": [torch.nn.Parameter(torch.zeros(3))]}, {"params": []}]
    assert fused_adamw(on_cpu)
    assert not fused_adamw([*on_cpu, {"params": [torch.nn.Parameter(torch.zeros(3, device="meta"))]}])
    torch.optim.AdamW(on_cpu, fused=fused_adamw(on_cpu)).step()  # the kernel exists here
