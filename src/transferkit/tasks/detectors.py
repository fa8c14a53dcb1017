"""Detector heads from torchvision on a backbone's feature maps: Faster R-CNN, FCOS or RetinaNet with an FPN.

The backbone stays the run's ``TransferModel.backbone``; the detection head is a torchvision detector
whose own ``backbone`` is ``FeaturePyramid``, a small adapter that reads the backbone's
``forward_feature_maps`` and puts torchvision's ``FeaturePyramidNetwork`` on them, with the
``out_channels`` torchvision asks of a detector backbone. The adapter holds only the pyramid's
weights, so the head's weights (``head.safetensors``) are the pyramid and the detector, and the
backbone's are the backbone's, as for every other task. Each detector is one registered builder
(``DETECTORS``).

Anchors (Faster R-CNN, RetinaNet) are sized to the pyramid level they sit on, four strides wide,
so that a stride-4 level proposes objects of 16 pixels: aerial and microscopy objects are small.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.registry import Registry

PYRAMID_CHANNELS = 128
# most boxes a detector keeps per tile (aerial tiles hold dozens of tree crowns)
DETECTIONS_PER_TILE = 300
# a box whose score is below this is dropped before NMS (low, so that mAP sees the whole ranking)
MIN_SCORE = 0.05


class FeaturePyramid(nn.Module):
    """``pixels (B, 3, H, W) -> {"0": (B, C, H/s_0, W/s_0), ..., "pool": ...}``: torchvision's FPN on the
    backbone's feature maps, with the extra max-pooled level torchvision's detectors expect.

    The backbone is called, not held: it is the run's own module (``TransferModel.backbone``), whose
    weights are stored, frozen or trained there.
    """

    def __init__(self, backbone: Backbone, out_channels: int = PYRAMID_CHANNELS) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        self.read_maps: Callable[..., Any] = backbone.forward_feature_maps  # a bound method: not a submodule
        self.strides = (*backbone.feature_strides, 2 * backbone.feature_strides[-1])
        self.out_channels = out_channels  # what torchvision's detectors read off their backbone
        self.fpn = FeaturePyramidNetwork(list(backbone.feature_channels), out_channels, extra_blocks=LastLevelMaxPool())

    def forward(self, pixels: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict(self.read_maps(pixel_values=pixels).as_dict()))


@dataclass(frozen=True)
class DetectorSettings:
    """What every detector builder is given.

    Attributes:
        num_classes: object classes plus the background (torchvision's convention).
        image_size: tiles are neither enlarged nor shrunk beyond this side (torchvision's ``min_size`` and
            ``max_size``).
        mean, std: the backbone's input normalisation (the detector normalises ``[0, 1]`` pixels itself).
    """

    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def common(self) -> dict[str, Any]:
        return {"min_size": self.image_size, "max_size": self.image_size, "image_mean": list(self.mean),
                "image_std": list(self.std)}


@dataclass(frozen=True)
class DetectorEntry:
    name: str
    build: Callable[[FeaturePyramid, DetectorSettings], nn.Module]
    description: str


def _make_detector(name: str, target: Callable[[FeaturePyramid, DetectorSettings], nn.Module], *,
                   description: str) -> DetectorEntry:
    return DetectorEntry(name, target, description)


DETECTORS: Registry[DetectorEntry] = Registry("detector", _make_detector)
DEFAULT_DETECTOR = "faster_rcnn"


def _anchors(pyramid: FeaturePyramid, scales: tuple[float, ...]) -> Any:
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple(tuple(int(4 * stride * scale) for scale in scales) for stride in pyramid.strides)
    return AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))


@DETECTORS.register("faster_rcnn", description="Faster R-CNN (two stages: region proposals, then RoI-aligned "
                    "box heads) on the pyramid")
def faster_rcnn(pyramid: FeaturePyramid, settings: DetectorSettings) -> nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.ops import MultiScaleRoIAlign

    levels = [str(i) for i in range(len(pyramid.strides) - 1)]
    return FasterRCNN(pyramid, num_classes=settings.num_classes, rpn_anchor_generator=_anchors(pyramid, (1.0,)),
                      box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
                      box_detections_per_img=DETECTIONS_PER_TILE, box_score_thresh=MIN_SCORE, **settings.common())


@DETECTORS.register("fcos", description="FCOS (one stage, anchor-free: a box regressed from every pyramid cell, "
                    "GIoU loss, centre-ness) on the pyramid")
def fcos(pyramid: FeaturePyramid, settings: DetectorSettings) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    # FCOS places one point per cell; its "anchor" is the cell's stride-sized square
    points = AnchorGenerator(sizes=tuple((s,) for s in pyramid.strides), aspect_ratios=((1.0,),) * len(pyramid.strides))
    return FCOS(pyramid, num_classes=settings.num_classes, anchor_generator=points,
                detections_per_img=DETECTIONS_PER_TILE, score_thresh=MIN_SCORE, **settings.common())


@DETECTORS.register("retinanet", description="RetinaNet (one stage, anchors, focal loss) on the pyramid")
def retinanet(pyramid: FeaturePyramid, settings: DetectorSettings) -> nn.Module:
    from torchvision.models.detection import RetinaNet

    return RetinaNet(pyramid, num_classes=settings.num_classes, anchor_generator=_anchors(pyramid, (1.0, 1.26, 1.59)),
                     detections_per_img=DETECTIONS_PER_TILE, score_thresh=MIN_SCORE, **settings.common())


class DetectionHead(nn.Module):
    """The task's head: a torchvision detector on ``FeaturePyramid``.

    ``forward(images, targets)``: in training mode the detector's loss terms (a dict), in evaluation mode
    one ``{"boxes" (M, 4), "scores" (M,), "labels" (M,)}`` per image, in its pixels.
    """

    def __init__(self, backbone: Backbone, detector: str, settings: DetectorSettings) -> None:
        super().__init__()
        self.detector = DETECTORS.get(detector).build(FeaturePyramid(backbone), settings)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        return self.detector(images, targets if self.training else None)
