"""How each task runs as one graph, backbone and head together: the contract of ONNX export and serving.

A task is exportable when it registers an ``ExportableTask`` here: example batches to trace the graph
on (two of them, of different batch sizes and lengths, so that the axes that vary are the dynamic
ones), the graph's outputs and their dynamic axes, and how the task's raw outputs (what ``Task.decode``
takes) come from a forward function over batches. Every engine (``export.engine``: torch, onnx,
onnx-int8) predicts through ``predict_outputs`` with its own ``forward``, so the ONNX model and the
PyTorch model answer the same way and the server does not care which runs. ``GraphExport`` holds the
defaults (the graph is ``TransferModel.forward`` on the backbone's batch tensors, one output); a task
whose graph differs overrides ``graph`` (the module traced) and ``session_forward`` (how onnxruntime
answers a batch).

Pooled tasks (classification, multilabel, regression, verification) share one entry; ner runs the
word windows of ``tasks.tokens``; detection (``export.detection``) exports the detector per tile, and
the tiling and the merge of the tiles' boxes stay in Python around it:

    >>> @EXPORTABLE_TASKS.register("segmentation", description="a mask per image")  # doctest: +SKIP
    ... class SegmentationExport(GraphExport): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.export.graph import (  # noqa: F401 - BatchGraph, dynamic_axes and example_items are imported from here too
    EXAMPLE_TEXTS,
    Batch,
    BatchGraph,
    dynamic_axes,
    example_items,
    pooled_example_batches,
)
from transferkit.registry import Registry
from transferkit.tasks.generation import GenerationExport

if TYPE_CHECKING:
    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.tasks import Task

Forward = Callable[[Batch], Any]  # a batch -> the head's raw outputs (a tensor; a detector's boxes per tile)


class GraphExport:
    """The defaults of an exportable task: the graph is the run's model on the backbone's batch tensors, with one
    output ``outputs`` whose ``output_axes`` vary."""

    output_axes: dict[int, str] = {0: "batch"}
    output_names: tuple[str, ...] = ("outputs",)
    exact_shapes = True  # the export fails when its graph's outputs have other shapes than PyTorch's

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        """Two batches of other sizes or lengths to trace and check the graph on."""
        raise NotImplementedError

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> Any:
        """What ``Task.decode`` takes for ``samples``, computed through ``forward``."""
        raise NotImplementedError

    def trace_batch(self, batches: list[Batch]) -> Batch:
        """The batch the graph is traced on (the other example batches check it)."""
        return batches[0]

    def difference(self, got: list[np.ndarray], expected: list[np.ndarray]) -> float | None:
        """The largest absolute difference of the graph's outputs from PyTorch's on one batch (float32 arrays
        in ``output_names``' order), or None when their shapes differ."""
        if any(a.shape != b.shape for a, b in zip(got, expected, strict=True)):
            return None
        return max((float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True) if a.size), default=0.0)

    def graph(self, model: nn.Module, names: list[str]) -> nn.Module:
        """The module traced to ONNX: positional inputs ``names`` (the example batches' keys), the outputs
        ``output_names`` (one tensor, or a tuple of them)."""
        return BatchGraph(model, names)

    def session_forward(self, session: Any) -> Forward:
        """What the onnx engines call for a batch: an onnxruntime ``session`` of the exported graph."""
        inputs = [i.name for i in session.get_inputs()]

        def forward(batch: Batch) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {key: batch[key].numpy() for key in inputs})[0])

        return forward

    def preprocessing(self, task: Task, described: dict[str, Any]) -> dict[str, Any]:
        """``preprocessing.json``: ``described`` is the backbone's own description (``export.onnx``)."""
        return described

    def int8_hint(self, task: Task) -> str:
        """Advice when the graph has nothing --quantize makes int8 (no MatMul or Gemm node)."""
        return ""


class PooledExport(GraphExport):
    """A head on pooled features: the graph maps a batch to ``(B, K)`` outputs."""

    output_axes: dict[int, str] = {0: "batch"}

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        """Two batches (2 and 3 items of different sizes or lengths) to trace and check the graph on."""
        return pooled_example_batches(backbone)

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """The head's outputs ``(N, K)`` for ``samples``, batch by batch through ``forward``."""
        from transferkit.features import make_loader

        chunks = [forward(batch).float().numpy() for batch, _ in make_loader(samples, backbone, None, train=False,
                                                                              batch_size=batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, task.num_outputs()), np.float32)


class WordTagExport(GraphExport):
    """A head on every token (ner): the graph maps a batch of word windows to ``(B, T, K)``."""

    output_axes: dict[int, str] = {0: "batch", 1: "tokens"}

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        from transferkit.tasks.tokens import word_windows

        sentences = [text.split() for text in EXAMPLE_TEXTS]
        return [word_windows(backbone, chosen).batch for chosen in (sentences[:2], sentences[2:])]

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """Per sentence the words' logits (``tasks.ner.WordScores``), as ``NamedEntities.predict_outputs``."""
        return task.predict_outputs(ForwardModel(forward, backbone), samples, batch_size=batch_size,
                                    use_cache=False)


class ForwardModel:
    """What ``tasks.tokens.word_logits`` calls a model for, answered by a forward function."""

    training = False

    def __init__(self, forward: Forward, backbone: Backbone) -> None:
        self.forward, self.backbone = forward, backbone

    def __call__(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch)

    def eval(self) -> ForwardModel:
        return self

    def train(self, mode: bool = True) -> ForwardModel:
        return self


@dataclass(frozen=True)
class ExportEntry:
    """One exportable task: ``target`` is the class (``PooledExport``, ``WordTagExport``) that runs it."""

    name: str
    target: type
    description: str

    def listing(self) -> tuple[str, ...]:
        return (",".join(self.target.output_axes.values()),)


def _make_entry(name: str, target: type, *, description: str) -> ExportEntry:
    return ExportEntry(name, target, description)


EXPORTABLE_TASKS: Registry[ExportEntry] = Registry("export", _make_entry,
                                                   hint="see `transferkit list export`")
for _name in ("classification", "multilabel", "regression", "verification"):  # verification: embedding + cosines
    EXPORTABLE_TASKS.register(_name, description="backbone + head on pooled features: (batch, outputs)")(PooledExport)
EXPORTABLE_TASKS.register("ner", description="backbone + head on every token: (batch, tokens, tags)")(WordTagExport)
EXPORTABLE_TASKS.register("generation", description="torch only: the backbone generates token by token")(
    GenerationExport)


def exportable(task_name: str) -> GraphExport:
    """The export entry of a task.

    Raises:
        ConfigError: the task has none yet (names the tasks that have one).
    """
    if task_name not in EXPORTABLE_TASKS:
        raise ConfigError(f"the {task_name} task cannot be exported or served yet; exportable tasks: "
                          f"{', '.join(EXPORTABLE_TASKS.names())}")
    return EXPORTABLE_TASKS.get(task_name).target()
