"""A frozen backbone's pooled features on onnxruntime: the fast way to extract features on a CPU.

On this kind of machine onnxruntime runs EfficientNet-Lite 2 to 3 times faster than eager PyTorch: it folds
each BatchNorm into its convolution, fuses the ReLU6 clamps, and pads inside the convolution instead of
copying every activation into a padded one (a profile of the eager forward at batch 16 spent 16 % of its time
in BatchNorm, 10 % clamping and 16 % padding; ``benchmarks/extract_speed.py`` measures both engines).
``throughput.extraction_plan`` decides when to use it.

The graph is traced in memory (never written to disk) on two synthetic batches of different sizes and
lengths, so the batch and sequence axes are dynamic, and it is checked against PyTorch on both before use.
A session is kept per backbone while its weights are unchanged (parameter version counters), so extracting
several sample sets from one backbone traces it once.
"""

from __future__ import annotations

import io
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch

from transferkit.backbones.base import Backbone
from transferkit.errors import BackboneError

Batch = dict[str, torch.Tensor]
# the largest absolute difference from PyTorch's features allowed, relative to the features' scale
TOLERANCE = 1e-4

_SESSIONS: weakref.WeakKeyDictionary[Backbone, tuple[tuple[int, ...], Callable[[Batch], torch.Tensor]]] = (
    weakref.WeakKeyDictionary())


def _versions(backbone: Backbone) -> tuple[int, ...]:
    return tuple(p._version for p in backbone.parameters())


def onnx_features_forward(backbone: Backbone) -> Callable[[Batch], torch.Tensor]:
    """``batch -> (B, D)`` features computed by onnxruntime, for ``backbone`` in eval mode on the CPU.

    Raises:
        BackboneError: the backbone does not trace to ONNX, or the graph's features differ from PyTorch's by
            more than ``TOLERANCE`` (the caller falls back to PyTorch).
    """
    versions = _versions(backbone)
    kept = _SESSIONS.get(backbone)
    if kept is not None and kept[0] == versions:
        return kept[1]
    import onnxruntime as ort

    from transferkit.export.graph import BatchGraph, dynamic_axes, pooled_example_batches, trace_onnx

    batches = pooled_example_batches(backbone)
    names = list(batches[0])
    graph = BatchGraph(backbone, names, method="forward_features").eval()
    buffer = io.BytesIO()
    try:
        trace_onnx(graph, batches[0], names, ["outputs"], dynamic_axes(batches, {0: "batch"}), buffer)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # a graph that fails on a batch is handled here (PyTorch takes over)
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # the tracer and onnxruntime raise many untyped errors
        raise BackboneError(f"{backbone.spec.name} does not run on onnxruntime: {type(exc).__name__}: "
                            f"{str(exc)[:200]}") from exc
    inputs = [i.name for i in session.get_inputs()]
    failed: list[str] = []

    def graph(batch: Batch) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {key: batch[key].numpy() for key in inputs})[0])

    def forward(batch: Batch) -> torch.Tensor:
        """The graph's features; PyTorch's from the first batch the graph cannot run on (a shape the traced
        graph fixed, say), with one warning, so an extraction never stops half-way."""
        if not failed:
            try:
                return graph(batch)
            except Exception as exc:  # onnxruntime raises its own untyped errors
                failed.append(str(exc)[:200])
                warnings.warn(f"{backbone.spec.name} on onnxruntime failed on a batch ({failed[0]}); extracting "
                              "the rest with PyTorch", RuntimeWarning, stacklevel=2)
        return backbone.forward_features(**batch)

    with torch.inference_mode():
        for batch in batches:
            expected = backbone.forward_features(**batch).float().numpy()
            try:
                got = graph(batch).numpy()
            except Exception as exc:  # onnxruntime's untyped errors: the graph does not hold for this shape
                raise BackboneError(f"{backbone.spec.name} does not run on onnxruntime: {str(exc)[:200]}") from exc
            worst = float(np.abs(got - expected).max())
            if worst > TOLERANCE * max(1.0, float(np.abs(expected).max())):
                raise BackboneError(f"{backbone.spec.name} on onnxruntime differs from PyTorch by {worst:.2g}")
    _SESSIONS[backbone] = (versions, forward)
    return forward
