"""How each task runs as one graph, backbone and head together: the contract of ONNX export and serving.

A task is exportable when it registers an ``ExportableTask`` here: example batches to trace the graph
on (two of them, of different batch sizes and lengths, so that the axes that vary are the dynamic
ones), the dynamic axes of the graph's output, and how the task's raw outputs (what ``Task.decode``
takes) come from a forward function over batches. Every engine (``export.engine``: torch, onnx,
onnx-int8) predicts through ``predict_outputs`` with its own ``forward``, so the ONNX model and the
PyTorch model answer the same way and the server does not care which runs.

Pooled tasks (classification, multilabel, regression) share one entry; ner runs the word windows of
``tasks.tokens``. A new task (detection, verification, generation) registers its own:

    >>> @EXPORTABLE_TASKS.register("detection", description="boxes from feature maps", output_axes={...})
    ... class DetectionExport(PooledExport): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from transferkit.errors import ConfigError
from transferkit.registry import Registry
from transferkit.tasks.generation import GenerationExport

if TYPE_CHECKING:
    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.tasks import Task

Batch = dict[str, torch.Tensor]
Forward = Callable[[Batch], torch.Tensor]  # a backbone batch -> the head's raw outputs


class PooledExport:
    """A head on pooled features: the graph maps a batch to ``(B, K)`` outputs."""

    output_axes: dict[int, str] = {0: "batch"}

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        """Two batches (2 and 3 items of different sizes or lengths) to trace and check the graph on."""
        items = example_items(backbone)
        return [backbone.collate([backbone.transform(item) for item in chosen]) for chosen in (items[:2], items[2:])]

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """The head's outputs ``(N, K)`` for ``samples``, batch by batch through ``forward``."""
        from transferkit.features import make_loader

        chunks = [forward(batch).float().numpy() for batch, _ in make_loader(samples, backbone, None, train=False,
                                                                              batch_size=batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, task.num_outputs()), np.float32)


class WordTagExport:
    """A head on every token (ner): the graph maps a batch of word windows to ``(B, T, K)``."""

    output_axes: dict[int, str] = {0: "batch", 1: "tokens"}

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        from transferkit.tasks.tokens import word_windows

        sentences = [text.split() for text in EXAMPLE_TEXTS]
        return [word_windows(backbone, chosen).batch for chosen in (sentences[:2], sentences[2:])]

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """Per sentence the words' logits (``tasks.ner.WordScores``), as ``NamedEntities.predict_outputs``."""
        return task.predict_outputs(_ForwardModel(forward, backbone), samples, batch_size=batch_size,
                                    use_cache=False)


class _ForwardModel:
    """What ``tasks.tokens.word_logits`` calls a model for, answered by a forward function."""

    training = False

    def __init__(self, forward: Forward, backbone: Backbone) -> None:
        self.forward, self.backbone = forward, backbone

    def __call__(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.forward(batch)

    def eval(self) -> _ForwardModel:
        return self

    def train(self, mode: bool = True) -> _ForwardModel:
        return self


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


class DetectionExport:
    """Boxes per image (detection): the task tiles each image and merges the tiles' boxes itself, so the torch
    engine predicts and serves it; a torchvision detector (proposals, NMS) is not exported to ONNX yet."""

    output_axes: dict[int, str] = {}  # no graph: boxes per image, any number

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        raise ConfigError("a detection run is not exported to ONNX yet; predict and serve it on the torch engine")

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """Per image its merged boxes, as ``Detection.predict_outputs``."""
        return task.predict_outputs(_ForwardModel(forward, backbone), samples, batch_size=batch_size)  # type: ignore[arg-type]


EXPORTABLE_TASKS.register("detection", description="boxes per image on the torch engine (no ONNX graph yet)")(
    DetectionExport)


def exportable(task_name: str) -> PooledExport | WordTagExport:
    """The export entry of a task.

    Raises:
        ConfigError: the task has none yet (names the tasks that have one).
    """
    if task_name not in EXPORTABLE_TASKS:
        raise ConfigError(f"the {task_name} task cannot be exported or served yet; exportable tasks: "
                          f"{', '.join(EXPORTABLE_TASKS.names())}")
    return EXPORTABLE_TASKS.get(task_name).target()


def dynamic_axes(batches: Sequence[Batch], output_axes: dict[int, str]) -> dict[str, dict[int, str]]:
    """The axes of each input that differ between the example batches (the batch, sequence lengths), named
    per input (Whisper's mel frames are twice its frame mask's), and the output's."""
    first, second = batches
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in first.items():
        varying = [axis for axis in range(tensor.ndim) if tensor.shape[axis] != second[name].shape[axis]]
        axes[name] = {axis: "batch" if axis == 0 else f"{name}_{axis}" for axis in varying}
    return {**axes, "outputs": dict(output_axes)}
