"""Turning samples into batches, and into backbone features cached on disk.

Features are cached in ``$TRANSFERKIT_CACHE`` (default ``~/.cache/transferkit``) under a key made
of the backbone spec and the content of every item, so a second run on the same data with the same
backbone (other head settings, another strategy that starts from features) skips extraction.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from transferkit.backbones.base import Backbone
from transferkit.data import Samples, item_digest, load_audio, load_image


def decode_item(item: Any, backbone: Backbone) -> Any:
    """A raw item (path, array, string) to what ``backbone.transform`` takes."""
    if backbone.modality == "image":
        return load_image(item)
    if backbone.modality == "audio":
        return load_audio(item, sample_rate=backbone.sample_rate or 16000)
    return str(item)


class BackboneDataset(Dataset):
    """Samples decoded and transformed for one backbone; yields ``(sample, label_index)``."""

    def __init__(self, samples: Samples, backbone: Backbone, label_ids: list[int] | None,
                 train: bool) -> None:
        self.samples, self.backbone, self.label_ids, self.train = samples, backbone, label_ids, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = decode_item(self.samples.items[index], self.backbone)
        label = -1 if self.label_ids is None else self.label_ids[index]
        return self.backbone.transform(item, train=self.train), label


def make_loader(samples: Samples, backbone: Backbone, label_ids: list[int] | None, *, train: bool,
                batch_size: int, seed: int = 0) -> DataLoader:
    """A DataLoader whose batches are ``(batch_dict, labels)``; shuffled when training."""

    def collate(pairs: list[tuple[Any, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = backbone.collate([sample for sample, _ in pairs])
        return batch, torch.tensor([label for _, label in pairs], dtype=torch.long)

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(BackboneDataset(samples, backbone, label_ids, train), batch_size=batch_size,
                      shuffle=train, collate_fn=collate, generator=generator, drop_last=False)


def cache_dir() -> Path:
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit"))


def features_key(backbone: Backbone, samples: Samples) -> str:
    digest = hashlib.sha256(backbone.fingerprint().encode())
    for item in samples.items:
        digest.update(item_digest(item).encode())
    return f"{backbone.spec.cache_key()}-{digest.hexdigest()[:24]}"


@torch.inference_mode()
def extract_features(backbone: Backbone, samples: Samples, *, batch_size: int = 32,
                     use_cache: bool = True, progress: bool = True) -> np.ndarray:
    """Pooled features ``(N, D)`` of every sample, from the cache when it has them.

    The backbone runs in eval mode without augmentation. The cache file is written atomically.
    """
    path = cache_dir() / "features" / f"{features_key(backbone, samples)}.safetensors"
    if use_cache and path.exists():
        return load_file(str(path))["features"]
    was_training = backbone.training
    backbone.eval()
    loader = make_loader(samples, backbone, None, train=False, batch_size=batch_size)
    chunks = []
    bar = tqdm(loader, desc=f"features {backbone.spec.name}", unit="batch", disable=not progress,
               leave=False)
    for batch, _ in bar:
        chunks.append(backbone.forward_features(**batch).float().cpu().numpy())
    backbone.train(was_training)
    features = np.concatenate(chunks) if chunks else np.zeros((0, backbone.num_features), np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"features": np.ascontiguousarray(features)}, str(tmp))
        tmp.replace(path)
    return features
