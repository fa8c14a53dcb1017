"""Shared preprocessing for image backbones: resize, crop, augment, normalise."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from transferkit.backbones.base import Backbone


class ImagePreprocessing:
    """Eval and train transforms of one image backbone, built from its options.

    Options read from the spec (all optional): ``image_size`` (square side in pixels),
    ``hflip`` (random horizontal flips while training; turn off for digits or text in images),
    ``crop_scale`` (smallest area fraction of the random resized crop), ``center_crop`` (at evaluation,
    resize the short side and crop the centre, as ImageNet evaluation does; False: resize the whole image
    to a square, so nothing near the border is lost).
    """

    def __init__(self, *, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 hflip: bool = True, crop_scale: float = 0.6, crop_pct: float = 0.875,
                 center_crop: bool = True) -> None:
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.center_crop = center_crop
        normalise = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        if center_crop:
            resize: list[Any] = [v2.Resize(int(round(image_size / crop_pct)), antialias=True),
                                 v2.CenterCrop(image_size)]
        else:
            resize = [v2.Resize((image_size, image_size), antialias=True)]
        self.eval_transform = v2.Compose([*resize, *normalise])
        train_ops: list[Any] = [v2.RandomResizedCrop(image_size, scale=(crop_scale, 1.0), antialias=True)]
        if hflip:
            train_ops.append(v2.RandomHorizontalFlip())
        self.train_transform = v2.Compose([*train_ops, *normalise])

    def __call__(self, image: Image.Image, train: bool) -> torch.Tensor:
        """``PIL RGB image -> (3, S, S)`` float tensor, normalised."""
        return (self.train_transform if train else self.eval_transform)(image)

    def describe(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "mean": self.mean, "std": self.std, "center_crop": self.center_crop}


class ImageBackbone(Backbone):
    """Base for image backbones: the transform and collate half of the contract."""

    modality = "image"
    preprocessing: ImagePreprocessing

    def transform(self, item: Image.Image, train: bool = False) -> torch.Tensor:
        return self.preprocessing(item, train)

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack(samples)}  # (B, 3, S, S)
