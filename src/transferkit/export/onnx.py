"""``transferkit export RUN --format onnx``: the run's backbone and head as one ONNX graph.

The export folder (default ``RUN/onnx``) holds::

    model.onnx          backbone + head (a LoRA adapter merged into the weights), float32, dynamic batch
                        and sequence axes; inputs are the backbone's batch tensors, output ``outputs``
                        (detection: the detector on one tile, ``image`` -> ``boxes``, ``scores``, ``labels``)
    model.int8.onnx     with --quantize: onnxruntime's dynamic int8 quantisation of it
    preprocessing.json  how raw inputs become those tensors (image size and normalisation, the tokenizer,
                        the audio sample rate and front end)
    tokenizer/          text backbones: the tokenizer's files
    labels.json         the task, its output names (classes, labels, tags) and its encoding
    export.json         what was exported from which run state, and the measured ONNX/PyTorch agreement

It is written in a staging folder and renamed into place when complete (``safety.staged_directory``).
The graph is traced with torch's TorchScript-based exporter (``dynamo=False``): on torch 2.14 the
``torch.export``-based one round-trips these models too, but takes 4 to 8 times longer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data import Samples
from transferkit.errors import ArtifactError, ConfigError
from transferkit.export.engine import (
    EXPORT_FOLDER,
    EXPORT_REPORT,
    INT8_FILE,
    MODEL_FILE,
    load_engine,
    run_fingerprint,
)
from transferkit.export.graph import OPSET, Batch, dynamic_axes, trace_onnx
from transferkit.export.tasks import GraphExport, exportable
from transferkit.safety import OUTPUT_DIRECTORY, atomic_write, staged_directory, write_bytes, write_json
from transferkit.tasks import task_from_manifest

FORMATS = ("onnx",)
QUANTIZED_OPS = ["MatMul", "Gemm"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


def merge_lora(backbone: nn.Module) -> int:
    """Merge every injected LoRA adapter into its base layer and put the base layer back in its place
    (PEFT's merge-and-unload, on a backbone that carries adapters without a ``PeftModel``); returns how
    many layers were merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = 0
    for name, module in list(backbone.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent_name) if parent_name else backbone, child, module.get_base_layer())
            merged += 1
    return merged


def export_onnx(run: str | Path, out: str | Path | None = None, *, quantize: bool = False, overwrite: bool = False,
                check: Samples | None = None) -> dict[str, Any]:
    """Export the run's model to ONNX (see the module docstring for the files).

    Args:
        out: the export folder (default ``RUN/onnx``).
        quantize: also write the int8 dynamic quantisation.
        check: labelled data on which the exported engines are evaluated next to PyTorch (the accuracy
            cost of int8).

    Returns:
        The export report (``export.json``): the agreement of ONNX (and int8) with PyTorch on example
        inputs, and the metrics on ``check``.

    Raises:
        ConfigError: a task without an export (``export.tasks``).
        ArtifactError: ``out`` exists and ``overwrite`` is false; an unreadable run.
    """
    from transferkit.artifact import load_model_from_run

    run = Path(run)
    out = Path(out) if out is not None else run / EXPORT_FOLDER
    model, manifest = load_model_from_run(run)
    task = task_from_manifest(manifest)
    task_name = task.name
    entry = exportable(task_name)
    merged = merge_lora(model.backbone)
    batches = entry.example_batches(model.backbone)
    names = list(batches[0])
    outputs = list(entry.output_names)
    axes = dynamic_axes(batches, entry.output_axes, outputs)
    graph = entry.graph(model, names).eval()
    with torch.inference_mode():
        expected = [_arrays(graph(*(batch[name] for name in names))) for batch in batches]
    report: dict[str, Any] = {
        "format": "onnx", "opset": OPSET, "exporter": "torch.onnx (TorchScript, dynamo=False)",
        "torch": torch.__version__, "run": str(run), "run_fingerprint": run_fingerprint(run), "task": task_name,
        "backbone": manifest["backbone"]["name"], "lora_layers_merged": merged,
        "inputs": {name: {"dtype": str(batches[0][name].dtype).removeprefix("torch."), "dynamic_axes": axes[name]}
                   for name in names},
        "outputs": {name: {"dynamic_axes": axes[name]} for name in outputs},
        "values_compared": int(sum(array.size for found in expected for array in found))}
    with staged_directory(out, overwrite=overwrite, what=OUTPUT_DIRECTORY) as staging:
        traced = entry.trace_batch(batches)
        atomic_write(staging / MODEL_FILE, lambda tmp: trace_onnx(graph, traced, names, outputs, axes, tmp))
        # None: other numbers of outputs (a detector's boxes of equal scores, which NMS may keep either way)
        report["max_abs_diff_outputs"] = _max_difference(staging / MODEL_FILE, batches, expected, entry)
        if report["max_abs_diff_outputs"] is None and entry.exact_shapes:
            raise ArtifactError(f"the ONNX graph of {run} gives outputs of other shapes than PyTorch on example "
                                "inputs of other sizes than the traced ones; it cannot be exported")
        if quantize:
            _check_quantizable(staging / MODEL_FILE, entry, task)
            atomic_write(staging / INT8_FILE, lambda tmp: _quantize(staging / MODEL_FILE, tmp))
            # None: int8 changed how many boxes a detector keeps, so there is no value-by-value difference
            report["int8_max_abs_diff_outputs"] = _max_difference(staging / INT8_FILE, batches, expected, entry)
        write_json(staging / "preprocessing.json",
                   entry.preprocessing(task, preprocessing_description(model.backbone, names)))
        _copy_tokenizer(model.backbone, staging / "tokenizer")
        write_json(staging / "labels.json", {"task": task_name, "names": task.names, "encoding": task.state()})
        write_json(staging / EXPORT_REPORT, report)
    if check is not None:
        report["check"] = evaluate_engines(run, out, check, ["torch", "onnx", *(["onnx-int8"] if quantize else [])])
        write_json(out / EXPORT_REPORT, report)
    return report


def _arrays(outputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """A graph's output tensor, or tuple of them, as float32 arrays (integer labels compared as floats)."""
    return [t.float().numpy() for t in (outputs if isinstance(outputs, tuple) else (outputs,))]


def _check_quantizable(path: Path, entry: GraphExport, task: Any) -> None:
    """Raise ConfigError when the graph has no node that --quantize makes int8 (``QUANTIZED_OPS``)."""
    import onnx

    if not any(node.op_type in QUANTIZED_OPS for node in onnx.load(str(path)).graph.node):
        raise ConfigError(f"--quantize: the {task.name} graph has no {' or '.join(QUANTIZED_OPS)} node, the only "
                          f"ones int8 dynamic quantisation converts (convolutions stay float32){entry.int8_hint(task)}")


def _quantize(source: Path, path: Path) -> None:
    """int8 weights for the matrix multiplications (attention, feed-forward and head layers); convolutions
    stay float32: dynamically quantised, EfficientNet-Lite0's depthwise convolutions gave wrong classes."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the model, printed through the root logger
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS)
    finally:
        root.setLevel(level)


def _max_difference(path: Path, batches: list[Batch], expected: list[list[np.ndarray]],
                    entry: GraphExport) -> float | None:
    """The largest absolute difference of the graph's outputs from PyTorch's on the example batches (these
    have other batch sizes and lengths than the one traced: a shape the tracer fixed would show here), or
    None when an output's shape differs (another number of boxes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, references in zip(batches, expected, strict=True):
        try:
            got = session.run(None, {key: value.numpy() for key, value in batch.items()})
        except Exception as exc:  # onnxruntime's own untyped errors: a shape the tracer kept constant
            raise ArtifactError(f"the exported graph fails on an example input of another size than the traced "
                                f"one, so it cannot be exported: {str(exc).splitlines()[0][:300]}") from exc
        difference = entry.difference([array.astype(np.float32) for array in got], references)
        if difference is None:
            return None
        worst = max(worst, difference)
    return worst


def evaluate_engines(run: Path, export: Path, samples: Samples, engines: list[str]) -> dict[str, Any]:
    """The task's metrics of each engine on labelled ``samples`` (the accuracy cost of int8)."""
    found = {}
    for name in engines:
        engine = load_engine(run, name, export=export)
        found[name] = engine.task.metrics(samples.labels or [], engine.predict_scores(samples))
    return found


def preprocessing_description(backbone: Backbone, names: list[str]) -> dict[str, Any]:
    """How raw inputs become the graph's inputs, for a user who runs the ONNX model without transferkit."""
    described = {"modality": backbone.modality, "inputs": names, "backbone": backbone.spec.to_dict()}
    return {**described, **_DESCRIBE[backbone.modality](backbone)}


def _describe_image(backbone: Backbone) -> dict[str, Any]:
    prep = getattr(backbone, "preprocessing", None)
    if prep is None:
        raise ConfigError(f"backbone {backbone.spec.name!r} does not describe its image preprocessing")
    return {"image": {**prep.describe(), "resize_shorter_side": int(round(prep.image_size / 0.875)),
                      "center_crop": prep.image_size, "layout": "NCHW, RGB, float32 in [0, 1] then (x - mean) / std"}}


def _describe_text(backbone: Backbone) -> dict[str, Any]:
    return {"text": {"tokenizer": "tokenizer/", "max_length": getattr(backbone, "max_length", None),
                     "padding": "longest in the batch", "truncation": True}}


def _describe_audio(backbone: Backbone) -> dict[str, Any]:
    extractor = getattr(backbone, "feature_extractor", None)
    config = {key: value for key, value in (extractor.to_dict() if extractor is not None else {}).items()
              if isinstance(value, str | int | float | bool | type(None))}
    return {"audio": {"sample_rate": backbone.sample_rate, "mono": True,
                      "max_samples": getattr(backbone, "max_samples", None),
                      "front_end": type(extractor).__name__ if extractor is not None else None,
                      "front_end_config": config}}


_DESCRIBE = {"image": _describe_image, "text": _describe_text, "audio": _describe_audio}


def _copy_tokenizer(backbone: Backbone, folder: Path) -> None:
    """The text backbone's tokenizer files, copied from the folder it was loaded from (or its
    ``tokenizer.json``, serialised, when it came from elsewhere)."""
    tokenizer = getattr(backbone, "tokenizer", None)
    if tokenizer is None:
        return
    source = Path(str(getattr(tokenizer, "name_or_path", "")))
    found = [source / name for name in TOKENIZER_FILES if (source / name).is_file()] if source.is_dir() else []
    folder.mkdir()
    for path in found:
        write_bytes(folder / path.name, path.read_bytes())
    if not found and getattr(tokenizer, "is_fast", False):
        write_bytes(folder / "tokenizer.json", tokenizer.backend_tokenizer.to_str().encode())
