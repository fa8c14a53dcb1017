"""A LeNet-style CNN for small grayscale images (digits), trained from scratch.

The classic small-image trunk of the domain-adaptation literature (DANN, ADDA and TLlib's digit
benchmarks use this shape): two 5×5 convolutions with BatchNorm, max pooling, then a fully connected
bottleneck to a ``(B, 500)`` feature. It has no pretrained weights: it exists so that deep adaptation
methods can be measured on MNIST / USPS without a hub download, in minutes on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from transferkit.backbones.base import BACKBONES, Backbone, BackboneSpec
from transferkit.backbones.image import ImageBackbone
from transferkit.errors import BackboneError


class DigitPreprocessing:
    """Grayscale, resized to ``image_size`` (default 28), scaled to ``[-1, 1]``.

    Training adds a small random shift and rotation when the spec's ``augment`` option is true
    (default false: the adaptation benchmarks compare methods without augmentation). Plain PIL and
    numpy rather than a transform pipeline: at 28 pixels the per-call overhead would cost more than
    the network.
    """

    def __init__(self, *, image_size: int, augment: bool) -> None:
        self.image_size = image_size
        self.jitter = v2.RandomAffine(degrees=10, translate=(0.1, 0.1)) if augment else None

    def __call__(self, image: Image.Image, train: bool) -> torch.Tensor:
        """``PIL image -> (1, S, S)``."""
        gray = image.convert("L")
        if gray.size != (self.image_size, self.image_size):
            gray = gray.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        if train and self.jitter is not None:
            gray = self.jitter(gray)
        pixels = torch.from_numpy(np.asarray(gray, dtype=np.float32))  # (S, S) in [0, 255]
        return (pixels / 127.5 - 1.0).unsqueeze(0)


class LeNetBackbone(ImageBackbone):
    """``(B, 1, S, S) -> (B, 500)``: conv(32, 5×5) → pool → conv(64, 5×5) → pool → fc(500).

    Options: ``image_size`` (default 28; the flattened size follows it), ``width`` (channels of the
    first convolution, default 32; the second has twice as many), ``augment``.
    """

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        side = int(spec.options.get("image_size", 28))
        width = int(spec.options.get("width", 32))
        if side < 16:
            raise BackboneError(f"lenet needs images of at least 16 pixels, not image_size={side}")
        self.preprocessing = DigitPreprocessing(image_size=side, augment=bool(spec.options.get("augment", False)))
        self.conv1 = nn.Sequential(nn.Conv2d(1, width, 5), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 5), nn.BatchNorm2d(2 * width), nn.Dropout2d(0.1),
                                   nn.ReLU(), nn.MaxPool2d(2))
        flat = 2 * width * (((side - 4) // 2 - 4) // 2) ** 2
        self.num_features = 500
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, self.num_features), nn.BatchNorm1d(self.num_features),
                                nn.ReLU())

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixel_values)  # (B, W, (S-4)/2, (S-4)/2)
        x = self.conv2(x)  # (B, 2W, ((S-4)/2-4)/2, ...)
        return self.fc(x)  # (B, 500)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [("conv1", self.conv1), ("conv2", self.conv2), ("fc", self.fc)]


@BACKBONES.register("lenet", modality="image", offline=True, pretrained_weights=False,
                    description="LeNet-style CNN for 28 px grayscale digits, 500-d, no pretrained weights "
                    "(use pretrained=False)")
def lenet(spec: BackboneSpec) -> Backbone:
    if spec.pretrained:
        raise BackboneError("lenet has no pretrained weights; build it with pretrained=False "
                            "(--from-scratch on the command line) and train it from scratch")
    return LeNetBackbone(spec)
