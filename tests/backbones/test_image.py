"""Image preprocessing: the centre crop of ImageNet evaluation, or the whole image resized to a square."""

from __future__ import annotations

import numpy as np
from PIL import Image

from transferkit.backbones.image import ImagePreprocessing


def test_the_whole_image_keeps_what_the_centre_crop_cuts_off() -> None:
    pixels = np.zeros((200, 300, 3), dtype=np.uint8)
    pixels[:, :30, 0] = 255  # a red stripe along the left tenth
    image = Image.fromarray(pixels)
    options = {"image_size": 32, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    cropped = ImagePreprocessing(**options)(image, False)  # (3, 32, 32)
    whole = ImagePreprocessing(**options, center_crop=False)(image, False)
    assert cropped.shape == whole.shape == (3, 32, 32)
    assert float(cropped[0, :, 0].mean()) < 0.05
    assert float(whole[0, :, 0].mean()) > 0.9
    assert ImagePreprocessing(**options, center_crop=False).describe()["center_crop"] is False
