"""The model of a run, in one place: built (backbone + the task's head), described (the manifest) and
asked for predictions (features -> head -> the task's scores).

The estimator, the LR range test, domain adaptation, self-training and zero-shot all go through
these functions, so that every run directory is written and read the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from transferkit._version import __version__
from transferkit.backbones.base import Backbone, BackboneSpec
from transferkit.data import Samples
from transferkit.errors import DataError
from transferkit.heads import TransferModel
from transferkit.tasks import Task, task_manifest


def build_model(backbone: Backbone | BackboneSpec, task: Task, *, modality: str | None = None,
                dropout: float = 0.0) -> TransferModel:
    """The backbone (built from its spec, or given) with a new head for ``task``'s fitted targets.

    Seed torch before calling it for a reproducible head (and random backbone).

    Raises:
        DataError: the backbone takes another modality than ``modality``.
        BackboneError: an unknown backbone, or one that does not give the output the task reads.
    """
    from transferkit.backbones import create_backbone

    net = backbone if isinstance(backbone, Backbone) else create_backbone(backbone)
    if modality is not None and net.modality != modality:
        raise DataError(f"backbone {net.spec.name!r} takes {net.modality} but the data is {modality}; choose a "
                        f"{modality} backbone (`transferkit backbones`)")
    net.require_output(task.output)  # a token-level task on a CNN, say: names the outputs the backbone has
    return TransferModel(net, task.head_for(net, dropout), output=task.output)


def run_manifest(task: Task, *, modality: str, strategy: str, estimator_params: dict[str, Any],
                 strategy_info: dict[str, Any], fit_seconds: float | None,
                 backbone_seed: int | None = None) -> dict[str, Any]:
    """What a run directory records about how its model was made (``save_run`` adds the backbone's part).

    Args:
        backbone_seed: the torch seed the backbone was built under (rebuilds the random weights of a
            ``pretrained=False`` backbone whose weights the run does not store).
    """
    manifest = {"transferkit_version": __version__, "modality": modality, "task": task_manifest(task),
                "classes": task.names, "strategy": strategy, "estimator_params": estimator_params,
                "strategy_info": strategy_info, "fit_seconds": fit_seconds}
    if backbone_seed is not None:
        manifest["backbone_seed"] = backbone_seed
    return manifest


def features_and_outputs(model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``(N, D)`` (from the cache when ``use_cache``) and the head's raw outputs ``(N, K)``."""
    from transferkit.features import extract_features

    features = extract_features(model.backbone, samples, batch_size=batch_size, use_cache=use_cache,
                                progress=progress)
    with torch.inference_mode():
        outputs = model.head(torch.from_numpy(features)).float().numpy()
    return features, outputs


def predict_scores(model: TransferModel, task: Task, samples: Samples, *, batch_size: int = 32,
                   use_cache: bool = True, progress: bool = False) -> np.ndarray:
    """The task's scores for ``samples``: class probabilities, label probabilities, values or word tags."""
    outputs = task.predict_outputs(model, samples, batch_size=batch_size, use_cache=use_cache, progress=progress)
    return task.decode(outputs)
