"""Engines: what runs a fitted run's model. ``torch`` runs the run directory itself; ``onnx`` and
``onnx-int8`` run its ONNX export (``transferkit export``) through onnxruntime.

Every engine predicts through the task's ``ExportableTask.predict_outputs`` with its own forward
function, then ``Task.decode``, so the three answer in the same format and the CLI's ``predict`` and
the server need not know which one runs. The ONNX engines preprocess with the backbone rebuilt
without its weights (its transform, tokenizer and collate only); the graph holds the weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.backbones.base import Backbone, BackboneSpec
from transferkit.data import Samples
from transferkit.errors import ArtifactError
from transferkit.export.tasks import Batch, exportable
from transferkit.registry import Registry
from transferkit.tasks import Task, task_from_manifest

EXPORT_FOLDER = "onnx"  # RUN/onnx: where `transferkit export RUN` writes by default
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_REPORT = "export.json"


@dataclass
class Engine:
    """A loaded model of one run that predicts, whatever runs it.

    Attributes:
        name: the engine's registered name.
        task: the run's fitted task (decoding, records).
        backbone: the run's backbone, for preprocessing (``transform``, ``collate``, ``tokenize_words``).
        manifest: the run's ``transferkit.json``.
        forward: a batch of the backbone's tensors -> the head's raw outputs (a detector's: boxes per tile).
    """

    name: str
    task: Task
    backbone: Backbone
    manifest: dict[str, Any]
    forward: Callable[[Batch], Any]

    @property
    def modality(self) -> str:
        return str(self.manifest["modality"])

    def predict_scores(self, samples: Samples, *, batch_size: int = 32) -> np.ndarray:
        """The task's scores for ``samples`` (probabilities, values or word tags), as ``TransferEstimator``'s."""
        outputs = exportable(self.task.name).predict_outputs(self.forward, self.backbone, self.task, samples,
                                                            batch_size=batch_size)
        return self.task.decode(outputs)

    def records(self, samples: Samples, *, top_k: int = 3, batch_size: int = 32) -> list[dict[str, Any]]:
        """One JSON prediction per sample, as ``transferkit predict --json`` prints it (without the input)."""
        return [self.task.record(scores, top_k=top_k) for scores in self.predict_scores(samples,
                                                                                       batch_size=batch_size)]


@dataclass(frozen=True)
class EngineEntry:
    name: str
    target: Callable[[Path, Path | None], Engine]
    description: str


ENGINES: Registry[EngineEntry] = Registry("engine", EngineEntry, hint="torch, onnx or onnx-int8")


def load_engine(run: str | Path, name: str = "torch", *, export: str | Path | None = None) -> Engine:
    """The run's model on engine ``name``.

    Args:
        export: the ONNX export folder (default ``RUN/onnx``); ignored by the torch engine.

    Raises:
        ConfigError: an unknown engine.
        ArtifactError: no export, or one written from other weights than the run's.
    """
    entry = ENGINES.get(name)
    return entry.target(Path(run), None if export is None else Path(export))


@ENGINES.register("torch", description="the run directory on PyTorch")
def torch_engine(run: Path, export: Path | None = None) -> Engine:
    from transferkit.artifact import load_model_from_run

    model, manifest = load_model_from_run(run)
    task = task_from_manifest(manifest)

    def forward(batch: Batch) -> Any:
        with torch.inference_mode():
            return model(**batch)

    return Engine("torch", task, model.backbone, manifest, forward)


def _onnx_engine(file: str, name: str) -> Callable[[Path, Path | None], Engine]:
    def build(run: Path, export: Path | None = None) -> Engine:
        import onnxruntime as ort

        from transferkit.artifact import build_backbone_for_restore, read_manifest

        folder = export or run / EXPORT_FOLDER
        path = folder / file
        if not path.is_file():
            hint = " --quantize" if file == INT8_FILE else ""
            raise ArtifactError(f"{path} does not exist; write it with `transferkit export {run}{hint}`")
        manifest = read_manifest(run)
        check_export_matches(run, folder)
        spec = BackboneSpec.from_dict(manifest["backbone"])
        backbone = build_backbone_for_restore(spec, weights_saved=True).eval()  # preprocessing only
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # batches of every size and length come and go (a server's micro-batches): the arena would keep the
        # memory of the largest pattern seen, and grew by more at every new one in the load test
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise ArtifactError(f"{path} is not a readable ONNX model: {exc}") from exc
        task = task_from_manifest(manifest)
        return Engine(name, task, backbone, manifest, exportable(task.name).session_forward(session))

    return build


ENGINES.register("onnx", description="RUN/onnx/model.onnx on onnxruntime (float32)")(_onnx_engine(MODEL_FILE, "onnx"))
ENGINES.register("onnx-int8", description="RUN/onnx/model.int8.onnx on onnxruntime (int8 dynamic quantisation)")(
    _onnx_engine(INT8_FILE, "onnx-int8"))


def run_fingerprint(run: Path) -> str:
    """A digest of the run's manifest and weights files, which an export records and checks."""
    digest = hashlib.sha256()
    for path in sorted(run.glob("*.safetensors")) + [run / "transferkit.json"]:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def check_export_matches(run: Path, folder: Path) -> None:
    """Raise ArtifactError when the export at ``folder`` was written from another state of ``run``."""
    report = folder / EXPORT_REPORT
    try:
        recorded = json.loads(report.read_text())["run_fingerprint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{report} is missing or corrupt ({exc}); export the run again") from exc
    if recorded != run_fingerprint(run):
        raise ArtifactError(f"{folder} was exported from other weights than {run} holds now; run "
                            f"`transferkit export {run} --overwrite`")
