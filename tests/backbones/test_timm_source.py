"""timm backbones: feature maps are what timm's own ``features_only`` model gives, from the one trunk."""

from __future__ import annotations

import pytest
import timm
import torch

from transferkit.backbones import create_backbone


# the levels at strides 4 to 32 (a stride-2 stem level comes first where the model has one)
@pytest.mark.parametrize(("name", "levels"), [("test_efficientnet", (1, 2, 3, 4)), ("test_resnet", (1, 2, 3, 4)),
                                              ("test_convnext", (0, 1, 2, 3))])
def test_feature_maps_equal_timms_features_only_model(name: str, levels: tuple[int, ...]) -> None:
    backbone = create_backbone(f"timm:{name}", pretrained=False).eval()
    reference = timm.create_model(name, pretrained=False, features_only=True, out_indices=levels).eval()
    # the same weights: features_only renames modules and drops the head, but keeps the trunk's order
    theirs_state, ours_state = reference.state_dict(), list(backbone.model.state_dict().values())
    assert [v.shape for v in theirs_state.values()] == [v.shape for v in ours_state[:len(theirs_state)]]
    reference.load_state_dict(dict(zip(theirs_state, ours_state, strict=False)))
    assert backbone.feature_strides == tuple(reference.feature_info.reduction()) == (4, 8, 16, 32)
    assert backbone.feature_channels == tuple(reference.feature_info.channels())
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = backbone.forward_feature_maps(pixel_values=pixels).maps
        theirs = reference(pixels)
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_a_plain_vit_gives_one_map_at_stride_16() -> None:
    backbone = create_backbone("timm:test_vit", pretrained=False).eval()
    side = backbone.preprocessing.image_size
    assert backbone.feature_strides == (16,)
    with torch.no_grad():
        (fmap,) = backbone.forward_feature_maps(pixel_values=torch.randn(1, 3, side, side)).maps
    assert fmap.shape == (1, backbone.feature_channels[0], side // 16, side // 16)
