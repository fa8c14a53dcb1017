"""Putting a fitted run to work: ONNX export (``onnx``), the engines that run a run (``engine``) and the
per-task graph contract (``tasks``; detection's in ``detection``)."""

from transferkit.export import detection as _detection  # noqa: F401  registers the detection export
from transferkit.export.engine import ENGINES, Engine, load_engine
from transferkit.export.onnx import export_onnx
from transferkit.export.tasks import EXPORTABLE_TASKS

__all__ = ["ENGINES", "EXPORTABLE_TASKS", "Engine", "export_onnx", "load_engine"]
