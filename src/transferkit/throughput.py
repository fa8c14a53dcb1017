"""The batch size that extracts features fastest on this machine, measured rather than assumed.

On a CPU a larger batch is not faster: EfficientNet-Lite0 at 224 px ran at 35 images/s one at a time and
13 images/s in batches of 32 (one thread). The likely cause is memory traffic: one activation of a batch
of 32 (32 × 32 channels × 112 × 112 floats) is 51 MB, far more than the caches, and the depthwise
convolutions do little arithmetic per byte they move (``benchmarks/extract_speed.py`` sweeps the batch
size, with ``channels_last`` beside it). Which size wins depends on the backbone, the input and the
machine, so on a CPU the extraction batch size is measured once per backbone and thread count, on the
data's own first samples: the fastest of 1, 2, 4, ... up to the batch size asked for.
Accelerators keep the size asked for. The choice is kept in ``$TRANSFERKIT_CACHE/features/batch_sizes.json`` and,
for the life of the process, in memory, so one process always extracts with one batch size.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from transferkit.backbones.base import Backbone
from transferkit.errors import ArtifactError
from transferkit.safety import FEATURE_CACHE, artifact_folder, write_json

SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
CLEAR_WIN = 1.25
_CHOSEN: dict[str, int] = {}


def _store() -> Path:
    from transferkit.features import cache_dir

    return cache_dir() / "features" / "batch_sizes.json"


def fastest_batch_size(backbone: Backbone, examples: Callable[[int], list[Any]], most: int) -> int:
    """The batch size, at most ``most``, at which ``backbone.forward_features`` runs fastest per sample.

    Args:
        backbone: in eval mode.
        examples: ``n -> n`` transformed samples (the data's first ones) to time the forward pass on.
        most: the largest batch size to consider (the one asked for).
    """
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    if device.type != "cpu" or most <= 1:
        return most
    key = f"{backbone.spec.cache_key()}|threads={torch.get_num_threads()}|cpus={os.cpu_count()}|most={most}"
    if key in _CHOSEN:
        return _CHOSEN[key]
    stored = _read_store()
    if key in stored:
        _CHOSEN[key] = int(stored[key])
        return _CHOSEN[key]
    _CHOSEN[key] = measure(backbone, examples, [s for s in SIZES if s < most] + [most])
    with suppress(ArtifactError, OSError):  # an unwritable cache only means measuring again next time
        artifact_folder(_store().parent, FEATURE_CACHE, adopt="*.safetensors")
        write_json(_store(), {**_read_store(), key: _CHOSEN[key]})
    return _CHOSEN[key]


@torch.inference_mode()
def measure(backbone: Backbone, examples: Callable[[int], list[Any]], sizes: list[int]) -> int:
    """The size among ``sizes`` with the most samples per second (best of two timed passes after a warm-up).

    A smaller size than the largest must be faster by ``CLEAR_WIN`` to be chosen: on a busy machine the
    timings are noisy, and noise alone should not trade the asked size for a smaller one.
    """
    samples = examples(max(sizes))
    if not samples:
        return sizes[-1]
    rates = {}
    for size in sizes:
        batch = backbone.collate([samples[i % len(samples)] for i in range(size)])
        backbone.forward_features(**batch)  # warm-up: allocations, oneDNN primitives for this shape
        rates[size] = size / max(min(_timed(backbone, batch) for _ in range(2)), 1e-9)
    largest = max(sizes)
    best = max(rates, key=rates.__getitem__)
    return best if rates[best] > CLEAR_WIN * rates[largest] else largest


def _timed(backbone: Backbone, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    backbone.forward_features(**batch)
    return time.perf_counter() - start


def _read_store() -> dict[str, int]:
    try:
        data = json.loads(_store().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}
