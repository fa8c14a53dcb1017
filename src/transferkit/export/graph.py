"""The graph helpers every export path shares: a model as a graph of positional tensors, tracing it to ONNX,
example inputs of each modality, and which axes vary.

They depend on nothing but torch and the backbone contract, so extraction on onnxruntime
(``export.forward``, used by ``features``) can trace a frozen backbone without the per-task export contract
(``export.tasks``) or run directories (``artifact``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from transferkit.backbones.base import Backbone

Batch = dict[str, Any]  # the backbone's batch tensors (a detector's: a list of tiles under "images")
OPSET = 17


class BatchGraph(nn.Module):
    """The run's model (or its method ``method``, say a backbone's ``forward_features``) with positional inputs in
    a fixed order (what the ONNX graph's inputs are)."""

    def __init__(self, model: nn.Module, names: list[str], method: str = "__call__") -> None:
        super().__init__()
        self.model, self.names, self.method = model, names, method

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(**dict(zip(self.names, tensors, strict=True)))


def trace_onnx(graph: nn.Module, batch: Batch, names: list[str], outputs: list[str], axes: dict[str, dict[int, str]],
               path: Path | BinaryIO) -> None:
    """Trace ``graph`` on ``batch`` into an ONNX model at ``path`` (a file, or a buffer held in memory)."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it keeps constant (checked below)
        target = str(path) if isinstance(path, Path) else path
        torch.onnx.export(graph, tuple(batch[name] for name in names), target, dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


EXAMPLE_TEXTS = ("a short example", "an example sentence that is somewhat longer than the first",
                 "three words here", "the export traces", "one more sentence of example words for the check")


def _example_images(backbone: Backbone) -> list[Any]:
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(64, 48), (40, 40), (32, 56), (48, 48), (50, 30)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _example_clips(backbone: Backbone) -> list[Any]:
    rate = backbone.sample_rate or 16000
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(rate * seconds))).astype(np.float32) for seconds in (0.5, 1.3, 0.7, 1.1,
                                                                                                 0.9)]


_EXAMPLES: dict[str, Callable[[Backbone], list[Any]]] = {
    "image": _example_images, "text": lambda _: list(EXAMPLE_TEXTS), "audio": _example_clips}


def example_items(backbone: Backbone) -> list[Any]:
    """Five decoded items of the backbone's modality, of different sizes (images) or lengths."""
    return _EXAMPLES[backbone.modality](backbone)


def pooled_example_batches(backbone: Backbone) -> list[Batch]:
    """Two batches (2 and 3 items of different sizes or lengths) to trace and check a pooled graph on."""
    items = example_items(backbone)
    return [backbone.collate([backbone.transform(item) for item in chosen]) for chosen in (items[:2], items[2:])]


def dynamic_axes(batches: Sequence[Batch], output_axes: dict[int, str],
                 output_names: Sequence[str] = ("outputs",)) -> dict[str, dict[int, str]]:
    """The axes of each input that differ between the example batches (the batch, sequence lengths), named
    per input (Whisper's mel frames are twice its frame mask's), and each output's."""
    first, second = batches
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in first.items():
        varying = [axis for axis in range(tensor.ndim) if tensor.shape[axis] != second[name].shape[axis]]
        axes[name] = {axis: "batch" if axis == 0 else f"{name}_{axis}" for axis in varying}
    return {**axes, **{name: dict(output_axes) for name in output_names}}
