"""Backbones from timm: ``timm:NAME`` (any ``timm.create_model`` name).

Pretrained weights come from timm's hub, which needs internet; ``pretrained=False`` builds the
architecture only (timm's ``test_*`` models make tiny, fast ones for tests).
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import BACKBONES, Backbone, BackboneSpec, FeatureMaps
from transferkit.backbones.image import ImageBackbone, ImagePreprocessing
from transferkit.errors import BackboneError


class TimmBackbone(ImageBackbone):
    """A timm model with its classifier removed (``num_classes=0``), pooled to ``(B, D)``.

    Models with timm's ``forward_intermediates`` also give feature maps: for each stride from 4 on,
    the last level of the model's ``feature_info`` at that stride (what ``features_only=True`` would
    return, read from the same trunk rather than a second copy of it). A CNN gives strides 4 to 32, a
    plain ViT one map at stride 16.
    """

    def __init__(self, model_name: str, spec: BackboneSpec) -> None:
        super().__init__()
        import timm

        self.spec = spec
        try:
            self.model = timm.create_model(model_name, pretrained=spec.pretrained, num_classes=0)
        except RuntimeError as exc:  # unknown model names raise RuntimeError in timm
            raise BackboneError(f"timm cannot create {model_name!r}: {exc}") from exc
        except Exception as exc:  # hub/network failures surface as many types
            raise BackboneError(f"cannot load timm weights for {model_name!r} (needs internet, or "
                                f"use pretrained=False): {exc}") from exc
        self.num_features = int(self.model.num_features)
        levels: dict[int, tuple[int, int]] = {}  # stride -> (feature_info index, channels); later levels win
        for index, level in enumerate(getattr(self.model, "feature_info", None) or []):
            if int(level["reduction"]) >= 4:
                levels[int(level["reduction"])] = (index, int(level["num_chs"]))
        if levels and hasattr(self.model, "forward_intermediates"):
            self.outputs = frozenset({"pooled", "feature_maps"})
            self.feature_strides = tuple(sorted(levels))
            self.feature_channels = tuple(levels[stride][1] for stride in self.feature_strides)
            self._level_indices = [levels[stride][0] for stride in self.feature_strides]
        config = timm.data.resolve_data_config({}, model=self.model)
        side = int(spec.options.get("image_size", config["input_size"][-1]))
        self.preprocessing = ImagePreprocessing(
            image_size=side, mean=tuple(config["mean"]), std=tuple(config["std"]),
            hflip=bool(spec.options.get("hflip", True)),
            crop_scale=float(spec.options.get("crop_scale", 0.6)),
            crop_pct=float(config.get("crop_pct", 0.875)),
            center_crop=bool(spec.options.get("center_crop", True)),
        )

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values)  # num_classes=0: pooled (B, D)

    def forward_feature_maps(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> FeatureMaps:
        if "feature_maps" not in self.outputs:
            raise self.missing_output("feature_maps")
        maps = self.model.forward_intermediates(pixel_values, indices=self._level_indices,
                                                intermediates_only=True)  # [(B, C_i, H/s_i, W/s_i)]
        return FeatureMaps(list(maps), self.feature_strides, self.feature_channels)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        from timm.models import group_parameters

        # grouped by parameter, not by module: a ViT's cls_token and pos_embed sit on the root module
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        params = dict(self.model.named_parameters())
        return [("stem" if index == 0 else f"group{index}", nn.ParameterList([params[n] for n in names]))
                for index, (_, names) in enumerate(sorted(groups.items()))]


@BACKBONES.register("timm:", outputs=("pooled", "feature_maps"), modality="image", offline=False,
                    description="any timm image model by name (pretrained weights need internet)")
def timm_backbone(spec: BackboneSpec) -> Backbone:
    return TimmBackbone(spec.name.split(":", 1)[1], spec)
