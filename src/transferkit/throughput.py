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

The engine is chosen too (``extraction_plan``): on a CPU, from ``MIN_ONNX_SAMPLES`` samples on, the frozen
backbone runs on onnxruntime (``export.forward``), which folds BatchNorm and padding into the convolutions
and ran EfficientNet-Lite0 2 to 3 times faster than eager PyTorch here; a backbone that does not trace, or
whose ONNX features differ from PyTorch's, stays on PyTorch. ``TRANSFERKIT_EXTRACT_ENGINE=torch`` (or
``onnx``) forces one engine.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transferkit.backbones.base import Backbone
from transferkit.errors import ArtifactError, BackboneError, ConfigError
from transferkit.safety import FEATURE_CACHE, artifact_folder, cache_dir, write_json

SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
CLEAR_WIN = 1.25
_CHOSEN: dict[str, int] = {}
ENGINE_VARIABLE = "TRANSFERKIT_EXTRACT_ENGINE"
ENGINES = ("auto", "torch", "onnx")
# below this many samples tracing the graph (a few seconds) costs more than it saves
MIN_ONNX_SAMPLES = 256
Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class ExtractionFallbackWarning(UserWarning):
    """The backbone could not run on onnxruntime; features are extracted by PyTorch."""


@dataclass(frozen=True)
class ExtractionPlan:
    """How ``features.extract_features`` runs: ``forward`` (a batch to ``(B, D)`` features) on ``engine``
    (``torch`` or ``onnx``), ``batch_size`` samples at a time."""

    forward: Forward
    engine: str
    batch_size: int


def extraction_plan(backbone: Backbone, examples: Callable[[int], list[Any]], most: int,
                    count: int) -> ExtractionPlan:
    """The engine and batch size to extract ``count`` samples' features with (see the module docstring).

    Raises:
        ConfigError: ``TRANSFERKIT_EXTRACT_ENGINE`` names no engine.
    """
    wanted = os.environ.get(ENGINE_VARIABLE, "auto").strip().lower() or "auto"
    if wanted not in ENGINES:
        raise ConfigError(f"{ENGINE_VARIABLE}={wanted!r} is not an extraction engine; use one of {', '.join(ENGINES)}")

    def eager(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return backbone.forward_features(**batch)

    forward, engine = eager, "torch"
    on_cpu = next(iter(backbone.parameters()), torch.empty(0)).device.type == "cpu"
    if on_cpu and (wanted == "onnx" or (wanted == "auto" and count >= MIN_ONNX_SAMPLES)):
        from transferkit.export.forward import onnx_features_forward

        try:
            forward, engine = onnx_features_forward(backbone), "onnx"
        except BackboneError as exc:
            warnings.warn(f"{exc}; extracting with PyTorch", ExtractionFallbackWarning, stacklevel=2)
    size = fastest_batch_size(backbone, examples, most, forward=forward, engine=engine)
    return ExtractionPlan(forward, engine, size)


def _store() -> Path:
    return cache_dir() / "features" / "batch_sizes.json"


def fastest_batch_size(backbone: Backbone, examples: Callable[[int], list[Any]], most: int, *,
                       forward: Forward | None = None, engine: str = "torch") -> int:
    """The batch size, at most ``most``, at which ``forward`` (default: ``backbone.forward_features``) runs
    fastest per sample.

    Args:
        backbone: in eval mode.
        examples: ``n -> n`` transformed samples (the data's first ones) to time the forward pass on.
        most: the largest batch size to consider (the one asked for).
        forward: what runs a batch (an onnxruntime session's, say); ``engine`` names it in the stored choice.
    """
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    if device.type != "cpu" or most <= 1:
        return most
    key = (f"{backbone.spec.cache_key()}|threads={torch.get_num_threads()}|cpus={os.cpu_count()}|most={most}"
           + ("" if engine == "torch" else f"|engine={engine}"))
    if key in _CHOSEN:
        return _CHOSEN[key]
    stored = _read_store()
    if key in stored:
        _CHOSEN[key] = int(stored[key])
        return _CHOSEN[key]
    _CHOSEN[key] = measure(backbone, examples, [s for s in SIZES if s < most] + [most], forward=forward)
    with suppress(ArtifactError, OSError):  # an unwritable cache only means measuring again next time
        artifact_folder(_store().parent, FEATURE_CACHE, adopt="*.safetensors")
        write_json(_store(), {**_read_store(), key: _CHOSEN[key]})
    return _CHOSEN[key]


@torch.inference_mode()
def measure(backbone: Backbone, examples: Callable[[int], list[Any]], sizes: list[int], *,
            forward: Forward | None = None) -> int:
    """The size among ``sizes`` with the most samples per second (best of two timed passes after a warm-up).

    A smaller size than the largest must be faster by ``CLEAR_WIN`` to be chosen: on a busy machine the
    timings are noisy, and noise alone should not trade the asked size for a smaller one.
    """
    run = forward if forward is not None else (lambda batch: backbone.forward_features(**batch))
    samples = examples(max(sizes))
    if not samples:
        return sizes[-1]
    rates = {}
    for size in sizes:
        batch = backbone.collate([samples[i % len(samples)] for i in range(size)])
        run(batch)  # warm-up: allocations, oneDNN primitives for this shape
        rates[size] = size / max(min(_timed(run, batch) for _ in range(2)), 1e-9)
    largest = max(sizes)
    best = max(rates, key=rates.__getitem__)
    return best if rates[best] > CLEAR_WIN * rates[largest] else largest


def _timed(run: Forward, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    run(batch)
    return time.perf_counter() - start


def _read_store() -> dict[str, int]:
    try:
        data = json.loads(_store().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}
