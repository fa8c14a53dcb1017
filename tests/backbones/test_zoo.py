"""The packaged EfficientNet-Lite entries: pooled features as the library computes them, and their stages."""

from __future__ import annotations

import pytest
import torch

from transferkit.backbones import create_backbone


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", pretrained=False, image_size=64)


def test_pooled_features_are_the_librarys_extract_features_mean(lite0) -> None:
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        lite0.eval()
        assert torch.equal(lite0.forward_features(pixel_values=pixels), lite0.net.extract_features(pixels).mean((2, 3)))
        lite0.train()  # drop-connect draws the same random numbers in the same order
        torch.manual_seed(3)
        ours = lite0.forward_features(pixel_values=pixels)
        torch.manual_seed(3)
        assert torch.equal(ours, lite0.net.extract_features(pixels).mean((2, 3)))


def test_feature_maps_are_the_last_block_of_each_stage(lite0) -> None:
    # EfficientNet-B0/Lite0 stage widths at strides 4, 8, 16, 32 (the 80-wide stage shares stride 16 with 112)
    assert (lite0.feature_strides, lite0.feature_channels) == ((4, 8, 16, 32), (24, 40, 112, 320))
    outputs: list[torch.Tensor] = []
    hooks = [lite0.net._blocks[i].register_forward_hook(lambda m, a, out: outputs.append(out)) for i in (2, 4, 10, 15)]
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = lite0.eval().forward_feature_maps(pixel_values=pixels)
    for hook in hooks:
        hook.remove()
    assert len(outputs) == 4 and all(torch.equal(a, b) for a, b in zip(maps.maps, outputs, strict=True))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "minilm"])
def test_the_zoos_recorded_cost_is_the_flop_counters(name: str) -> None:
    """``BackboneEntry.gflops`` (what ``fit``'s automatic choice compares) on its stated typical input."""
    import numpy as np
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from transferkit.backbones import BACKBONES

    backbone = create_backbone(name, pretrained=False).eval()
    item = (" ".join(["word"] * 24) if backbone.modality == "text"
            else Image.fromarray(np.zeros((240, 320, 3), np.uint8)))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        backbone.forward_features(**backbone.collate([backbone.transform(item)]))
    assert counter.get_total_flops() / 1e9 == pytest.approx(BACKBONES.get(name).gflops, rel=0.02)
