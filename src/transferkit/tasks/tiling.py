"""Tiles of large images for detection: overlapping windows, the boxes inside each, augmentation that moves
the boxes with the pixels, and the merge of the tiles' detections by NMS.

An aerial or microscopy image is far larger than a detector's input; shrinking it would erase its
small objects. It is cut into ``size``-pixel windows that overlap by ``overlap`` of their side, so
that an object cut by one window's edge is whole in its neighbour; detections from all windows are
shifted back to the image and merged class by class with non-maximum suppression
(``torchvision.ops.batched_nms``). An image no larger than a window is one window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# a box cut by a window's edge is a training target of that window if this share of it is inside
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class Window:
    """A tile: image ``index`` and its pixel window ``[x0, x1) x [y0, y1)``."""

    index: int
    x0: int
    y0: int
    x1: int
    y1: int


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Window starts along one side: ``size`` apart minus the overlap, the last one flush with the edge.

    Example:
        >>> tile_starts(1000, 400, 0.25)
        [0, 300, 600]
    """
    if length <= size:
        return [0]
    step = max(1, int(size * (1 - overlap)))
    count = math.ceil((length - size) / step) + 1
    return sorted({min(i * step, length - size) for i in range(count)})


def windows_of(index: int, width: int, height: int, size: int, overlap: float) -> list[Window]:
    """The overlapping tiles of one ``width x height`` image (one tile when it fits in ``size``)."""
    return [Window(index, x, y, min(x + size, width), min(y + size, height))
            for y in tile_starts(height, size, overlap) for x in tile_starts(width, size, overlap)]


def boxes_in(window: Window, boxes: np.ndarray, labels: np.ndarray, *,
             min_visible: float = MIN_VISIBLE) -> tuple[np.ndarray, np.ndarray]:
    """The boxes ``(N, 4)`` with at least ``min_visible`` of their area inside ``window``, clipped to it and
    in its coordinates, with their labels."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), labels
    clipped = np.stack([np.clip(boxes[:, 0], window.x0, window.x1), np.clip(boxes[:, 1], window.y0, window.y1),
                        np.clip(boxes[:, 2], window.x0, window.x1), np.clip(boxes[:, 3], window.y0, window.y1)], 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    kept = (inside >= min_visible * area) & (inside > 0)
    shifted = clipped[kept] - np.array([window.x0, window.y0, window.x0, window.y0], dtype=np.float32)
    return shifted.astype(np.float32), labels[kept]


def train_augmentation() -> Any:
    """Flips (aerial and microscopy images have no up) and mild colour jitter; ``transforms.v2`` moves the
    ``tv_tensors.BoundingBoxes`` with the pixels, and drops boxes left degenerate."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
                       v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
                       v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=2)])


class TileDataset(Dataset):
    """The tiles of a set of images: ``(pixels (3, h, w) in [0, 1], {"boxes" (N, 4), "labels" (N,)})``.

    Indexed by tile, or (from ``features.EpochSampler``) by ``(tile, seed)``: a training tile then moves
    by a random offset of up to half the tiles' spacing (seeded, so a resumed epoch replays it), which
    shows the detector many more distinct windows of a large image, and is augmented.

    Args:
        images: decoded RGB images (PIL).
        targets: per image ``{"boxes": [[x0, y0, x1, y1], ...], "labels": [k, ...]}`` (``k`` from 1), or None.
    """

    def __init__(self, images: Sequence[Any], targets: Sequence[dict[str, Any]] | None, *, size: int, overlap: float,
                 train: bool) -> None:
        from torchvision.transforms.v2 import functional as TF

        self.pixels = [TF.to_dtype(TF.to_image(image), torch.float32, scale=True) for image in images]  # (3, H, W)
        self.targets = targets
        self.size, self.overlap, self.train = size, overlap, train
        self.windows = [w for i, p in enumerate(self.pixels) for w in windows_of(i, p.shape[2], p.shape[1], size,
                                                                                 overlap)]
        self.augment = train_augmentation() if train else None

    def __len__(self) -> int:
        return len(self.windows)

    def _moved(self, window: Window, seed: int) -> Window:
        height, width = self.pixels[window.index].shape[1:]
        generator = torch.Generator().manual_seed(seed)
        reach = int(self.size * (1 - self.overlap) / 2)
        dx, dy = (int(v) for v in torch.randint(-reach, reach + 1, (2,), generator=generator))
        x0 = min(max(window.x0 + dx, 0), max(width - self.size, 0))
        y0 = min(max(window.y0 + dy, 0), max(height - self.size, 0))
        return Window(window.index, x0, y0, min(x0 + self.size, width), min(y0 + self.size, height))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from torchvision import tv_tensors

        from transferkit.features import seeded_torch

        tile, seed = key if isinstance(key, tuple) else (key, None)
        window = self.windows[tile]
        if seed is not None and self.train:
            window = self._moved(window, seed)
        pixels = self.pixels[window.index][:, window.y0:window.y1, window.x0:window.x1]
        boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        if self.targets is not None:
            target = self.targets[window.index]
            boxes, labels = boxes_in(window, np.asarray(target["boxes"], np.float32).reshape(-1, 4),
                                     np.asarray(target["labels"], np.int64))
        if self.augment is not None:
            canvas = (pixels.shape[1], pixels.shape[2])
            sample = {"image": tv_tensors.Image(pixels),
                      "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=canvas),
                      "labels": torch.from_numpy(labels)}
            with seeded_torch(seed if seed is not None else 0):
                sample = self.augment(sample)
            return sample["image"].as_subclass(torch.Tensor), {"boxes": sample["boxes"].as_subclass(torch.Tensor),
                                                                "labels": sample["labels"]}
        return pixels, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}


def tile_loader(dataset: TileDataset, *, batch_size: int, seed: int = 0) -> DataLoader:
    """Batches ``({"images": [...], "targets": [...]}, targets)`` of tiles; shuffled by ``(seed, epoch)`` when
    the dataset trains (``features.EpochSampler``)."""
    from transferkit.features import EpochSampler

    def collate(pairs: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[dict[str, Any], list[Any]]:
        images = [image for image, _ in pairs]
        targets = [target for _, target in pairs]
        return {"images": images, "targets": targets}, targets

    sampler = EpochSampler(len(dataset), seed) if dataset.train else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed))


def merge_detections(found: Sequence[tuple[Window, dict[str, torch.Tensor]]], *, iou: float) -> dict[str, np.ndarray]:
    """One image's detections from its tiles: each tile's boxes shifted into the image, then class-wise NMS
    at ``iou`` (an object seen whole by two overlapping tiles is kept once, with its higher score)."""
    from torchvision.ops import batched_nms

    boxes, scores, labels = [], [], []
    for window, detections in found:
        offset = torch.tensor([window.x0, window.y0, window.x0, window.y0], dtype=torch.float32)
        boxes.append(detections["boxes"].float().cpu() + offset)
        scores.append(detections["scores"].float().cpu())
        labels.append(detections["labels"].cpu())
    if not boxes:
        return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, int)}
    all_boxes, all_scores, all_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(all_boxes, all_scores, all_labels, iou) if len(found) > 1 else torch.arange(len(all_boxes))
    return {"boxes": all_boxes[keep].numpy(), "scores": all_scores[keep].numpy(), "labels": all_labels[keep].numpy()}
