"""Tasks: what a model predicts (one class, several labels, a number, a tag per word), each one registered ``Task``.

Importing the package registers every task; ``TASKS`` lists them (``transferkit tasks``).
"""

from transferkit.tasks import (  # noqa: F401  (registers the tasks)
    classification,
    detection,
    generation,
    multilabel,
    ner,
    regression,
    verification,
)
from transferkit.tasks.base import (
    DEFAULT_TASK,
    TASKS,
    ProbeFit,
    Task,
    TaskEntry,
    make_task,
    task_from_manifest,
    task_manifest,
)
from transferkit.tasks.classification import Classification
from transferkit.tasks.detection import Detection
from transferkit.tasks.generation import Generation
from transferkit.tasks.multilabel import MultiLabel
from transferkit.tasks.ner import NamedEntities
from transferkit.tasks.regression import Regression
from transferkit.tasks.verification import Verification

__all__ = ["DEFAULT_TASK", "TASKS", "Classification", "Detection", "Generation", "MultiLabel", "NamedEntities",
           "ProbeFit", "Regression", "Task", "TaskEntry", "Verification", "make_task", "task_from_manifest",
           "task_manifest"]
