"""L2-SP, BSS, partial and gradual unfreezing: what each one changes and what it leaves alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import support
from transferkit import TransferClassifier
from transferkit.backbones import create_backbone
from transferkit.data import samples_from_arrays
from transferkit.errors import ConfigError
from transferkit.features import make_loader
from transferkit.heads import LinearHead, TransferModel
from transferkit.strategies import STRATEGIES, FitConfig, FitData
from transferkit.strategies.finetune import GradualUnfreezing
from transferkit.strategies.regularizers import L2SP, REGULARIZERS, build_regularizers


@pytest.fixture
def model(tiny_bert_dir: Path) -> TransferModel:
    backbone = create_backbone(f"hf:{tiny_bert_dir}")
    return TransferModel(backbone, LinearHead(backbone.num_features, 2))


def test_l2sp_is_zero_at_the_start_and_pulls_back(model: TransferModel) -> None:
    hook = L2SP(model, alpha=0.1, beta=0.0)
    logits = torch.zeros(2, 2)
    assert float(hook.extra_loss(model, logits, torch.tensor([0, 1])).detach()) == 0.0
    weight = next(p for p in model.backbone.parameters() if p.ndim == 2)
    with torch.no_grad():
        weight.add_(0.5)
    loss = hook.extra_loss(model, logits, torch.tensor([0, 1]))
    assert float(loss.detach()) == pytest.approx(0.5 * 0.1 * 0.25 * weight.numel(), rel=1e-4)
    loss.backward()
    assert torch.allclose(weight.grad, torch.full_like(weight, 0.1 * 0.5), atol=1e-6)  # points back to w0


def test_bss_shrinks_the_smallest_singular_values(model: TransferModel) -> None:
    hook = REGULARIZERS.get("bss").factory(model, REGULARIZERS.get("bss").settings({"eta": 0.5, "k": 2}))
    features = torch.randn(6, model.backbone.num_features, requires_grad=True)
    logits = model.head(features)
    loss = hook.extra_loss(model, logits, torch.zeros(6, dtype=torch.long))
    singular = torch.linalg.svdvals(features.detach())
    assert float(loss.detach()) == pytest.approx(0.5 * float((singular[-2:] ** 2).sum()), rel=1e-4)
    frozen = model.head(features.detach())  # a frozen backbone's features carry no gradient: nothing to shrink
    assert hook.extra_loss(model, frozen, torch.zeros(6, dtype=torch.long)) is None
    hook.on_train_end(model)
    model.head(features)
    assert hook.features is None  # the capture hook is gone after training


def test_unknown_regularizer_is_a_config_error(model: TransferModel) -> None:
    with pytest.raises(ConfigError, match="nope"):
        build_regularizers(model, FitConfig(regularizers={"nope": {}}))


def test_gradual_unfreezes_one_group_per_epoch_from_the_top(model: TransferModel) -> None:
    hook = GradualUnfreezing(model, every=1)
    groups = model.backbone.layer_groups()
    for epoch in range(len(groups) + 1):
        hook.on_epoch_start(epoch, model, None)  # type: ignore[arg-type]
        open_groups = [all(p.requires_grad for p in m.parameters()) for _, m in groups]
        expected = min(len(groups), epoch + 1)
        assert open_groups == [False] * (len(groups) - expected) + [True] * expected


def _fit(tiny_bert_dir: Path, **params) -> tuple[dict, dict]:
    texts, labels = support.sentiment_texts(12, seed=3)
    name = f"hf:{tiny_bert_dir}"
    before = create_backbone(name).state_dict()
    clf = TransferClassifier(backbone=name, progress=False, val_fraction=0.0, lr=1e-3, **params).fit(texts, labels)
    return before, clf.model_.backbone.state_dict()


def test_gradual_with_one_epoch_trains_only_the_top_group(tiny_bert_dir: Path) -> None:
    before, after = _fit(tiny_bert_dir, strategy="gradual", epochs=1)
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(not k.startswith("model.embeddings") for k in changed)
    assert not any(k.startswith("model.encoder.layer.0.") for k in changed)


def test_partial_trains_the_last_k_groups_only(tiny_bert_dir: Path) -> None:
    before, after = _fit(tiny_bert_dir, strategy="partial", strategy_params={"train_last_k": 1}, epochs=2)
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.encoder.layer.1.") for k in changed)


def test_l2sp_keeps_weights_closer_to_pretrained(tiny_bert_dir: Path) -> None:
    def drift(before: dict, after: dict) -> float:
        return sum(float((after[k] - before[k]).pow(2).sum()) for k in after if after[k].is_floating_point())

    plain = drift(*_fit(tiny_bert_dir, strategy="finetune", epochs=3))
    pulled = drift(*_fit(tiny_bert_dir, strategy="finetune", epochs=3, regularizers=("l2sp",),
                         regularizer_params={"l2sp": {"alpha": 50.0}}))
    assert pulled < 0.8 * plain


def test_supcon_is_low_for_class_clusters_and_high_when_classes_mix() -> None:
    from transferkit.strategies.regularizers import supervised_contrastive_loss

    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clustered = directions[labels] + 0.01 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    mixed = directions[torch.tensor([0, 1, 0, 1, 0, 1])]
    low = supervised_contrastive_loss(clustered, labels, temperature=0.1)
    high = supervised_contrastive_loss(mixed, labels, temperature=0.1)
    assert float(low) < 1.0 < float(high)
    # no sample with a same-class partner: nothing to pull together
    assert float(supervised_contrastive_loss(clustered[[0, 3]], labels[[0, 3]], temperature=0.1)) == 0.0


def test_cosine_pairs_is_low_for_orthogonal_classes_and_high_when_classes_mix() -> None:
    from transferkit.strategies.regularizers import cosine_pair_loss

    labels = torch.tensor([0, 0, 1, 1])
    # same class: cosine 1; other class: orthogonal, cosine 0, which is SetFit's target for a negative pair
    separated = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    assert float(cosine_pair_loss(separated, labels)) == pytest.approx(0.0, abs=1e-6)
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    # of the 12 ordered pairs, the 4 same-class ones miss by 1 and the 4 cross-class ones at cosine 1 by 1
    assert float(cosine_pair_loss(mixed, labels)) == pytest.approx(8 / 12, rel=1e-5)
    assert float(cosine_pair_loss(separated[:1], labels[:1])) == 0.0


def _tune_contrastive(model: TransferModel, weight_decay: float = 0.01, **params) -> dict[str, torch.Tensor]:
    """Backbone weights before the contrastive strategy, with the given FitConfig options."""
    texts, labels = support.sentiment_texts(12, seed=3)
    samples = samples_from_arrays(texts, labels)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    data = FitData(train=samples, train_ids=[int(v == "pos") for v in labels], classes=["neg", "pos"])
    entry = STRATEGIES.get("contrastive")
    config = FitConfig(epochs=2, lr=1e-3, batch_size=8, progress=False, weight_decay=weight_decay)
    entry.fn(model, data, config, entry.settings(params))
    return before


def test_contrastive_without_ce_tunes_the_backbone_with_the_contrastive_term_only(model: TransferModel) -> None:
    def moved(before: dict) -> float:
        after = model.backbone.state_dict()
        return sum(float((after[k] - before[k]).abs().sum()) for k in after if after[k].is_floating_point())

    # weight 0 removes the contrastive term: with the cross-entropy cut off, nothing reaches the backbone
    # (no weight decay either, which AdamW would apply to the zero gradients)
    assert moved(_tune_contrastive(model, weight=0.0, ce=False, weight_decay=0.0)) == 0.0
    assert moved(_tune_contrastive(model, weight=0.0, ce=True, weight_decay=0.0)) > 0.0
    assert moved(_tune_contrastive(model, loss="cosine_pairs", ce=False)) > 0.0
    # the detaching hook is gone after training: gradients reach the backbone again
    model.backbone.train()
    batch = next(iter(make_loader(samples_from_arrays(["good", "bad"], ["pos", "neg"]), model.backbone, [1, 0],
                                  train=True, batch_size=2, seed=0)))[0]
    for p in model.backbone.parameters():
        p.requires_grad_(True)
    model(**batch)[:, 1].sum().backward()  # not both logits: the refitted binary head makes their sum constant
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_unknown_contrastive_loss_is_a_config_error(model: TransferModel) -> None:
    with pytest.raises(ConfigError, match="bss"):
        _tune_contrastive(model, loss="bss")


def test_contrastive_refits_the_head_on_tuned_features(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(16, seed=1)
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="contrastive", epochs=3, lr=1e-3,
                             regularizers=("l2sp",), progress=False, val_fraction=0.0).fit(texts, labels)
    info = clf.strategy_info_
    assert set(info["regularizers"]) == {"l2sp", "supcon"} and "probe_c" in info
    assert clf.backbone_trained_
    test_texts, test_labels = support.sentiment_texts(10, seed=7)
    assert clf.score(test_texts, test_labels) >= 0.7
