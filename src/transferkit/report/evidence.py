"""What a run's report is drawn from, gathered when the run is fitted and stored in its directory (bounded).

``RUN/report/evidence.json`` holds, for at most ``MAX_ROWS`` held-out samples, what the task's report view
keeps of each prediction (class probabilities, predicted entities, ...), where the rows come from, and the
worst-predicted examples as small embedded media (an image thumbnail, a text snippet, a few seconds of
audio). ``RUN/report/features.safetensors`` holds the pooled features of at most ``MAX_MAP_ROWS`` of those
rows (float16) for the 2-D map. Together they are a few MB at most, and ``transferkit report`` redraws the
page from them alone, without the training data.

The rows are, in this order of preference: the run's validation split; for a frozen backbone without one
(the linear probe cross-validates instead of splitting), out-of-fold predictions of the same probe refitted
at its chosen regularisation on ``FOLDS`` folds of the training data; otherwise the training data itself,
which the page then calls in-sample.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.errors import ArtifactError
from transferkit.safety import atomic_write, write_json

if TYPE_CHECKING:
    from transferkit.data import Samples
    from transferkit.estimator import TransferEstimator

EVIDENCE = "evidence.json"
FEATURES = "features.safetensors"
REPORT_FOLDER = "report"
MAX_ROWS = 1000  # held-out rows kept per run
MAX_MAP_ROWS = 600  # rows whose features are kept for the 2-D map
MAX_OOF_ROWS = 4000  # training rows the out-of-fold probe is refitted on, at most
FOLDS = 5
WORST = 8  # worst-predicted examples shown
THUMBNAIL = 112  # pixels, longest side
AUDIO_SECONDS = 3.0
SNIPPET = 300  # characters of a text


@dataclass
class Evidence:
    """The stored material of one run's report.

    Attributes:
        source: where the rows come from: ``validation``, ``cross-validation`` or ``training``.
        task: the task's name, which picks the report view.
        rows: what the task's view keeps per row (JSON), e.g. ``{"labels": [...], "probs": [[...]]}``.
        examples: the worst-predicted rows: ``{"origin", "media": {"kind", "data"}, ...}`` each.
        map_labels: per row of ``features``, the name to colour it by (its true class); may be empty.
        features: ``(M, D)`` pooled features of the map's rows, or None.
        metrics: the task's metrics on the rows.
    """

    source: str
    task: str
    rows: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)
    map_labels: list[str] = field(default_factory=list)
    features: np.ndarray | None = None
    metrics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "task": self.task, "metrics": self.metrics, "rows": self.rows,
                "examples": self.examples, "map_labels": self.map_labels}


def held_out(clf: TransferEstimator, *, seed: int = 0) -> tuple[str, Samples, np.ndarray] | None:
    """``(source, samples, scores)``: the rows the report shows and the fitted model's scores on them.

    None when the estimator kept no data (one loaded from disk).
    """
    val = getattr(clf, "validation_samples_", None)
    train = getattr(clf, "train_samples_", None)
    if val is not None and len(val) > 0:
        rows = _bounded(val, MAX_ROWS, seed)
        return "validation", rows, clf.predict_scores(rows)
    if train is None or len(train) == 0:
        return None
    if not clf.backbone_trained_ and clf.task_.output == "pooled":
        oof = _out_of_fold(clf, _bounded(train, MAX_OOF_ROWS, seed), seed)
        if oof is not None:
            return oof
    rows = _bounded(train, MAX_ROWS, seed)
    return "training", rows, clf.predict_scores(rows)


def _bounded(samples: Samples, limit: int, seed: int) -> Samples:
    if len(samples) <= limit:
        return samples
    keep = np.sort(np.random.default_rng(seed).permutation(len(samples))[:limit])
    return samples.subset(keep)


def _out_of_fold(clf: TransferEstimator, samples: Samples, seed: int) -> tuple[str, Samples, np.ndarray] | None:
    """The probe's predictions for each row from a probe fitted without it (``FOLDS`` folds, the chosen C)."""
    import copy

    import torch
    from sklearn.model_selection import KFold, StratifiedKFold

    from transferkit.features import extract_features
    from transferkit.heads import set_linear_head

    task = clf.task_
    targets = np.asarray(task.encode(samples.labels or []))
    features = extract_features(clf.model_.backbone, samples, batch_size=clf.batch_size, use_cache=True,
                                progress=False)
    counts = np.bincount(targets) if targets.ndim == 1 and targets.dtype.kind in "iu" else None
    if counts is not None and (len(counts) < 2 or counts[counts > 0].min() < 2):
        return None
    folds = min(FOLDS, int(counts[counts > 0].min())) if counts is not None else FOLDS
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if counts is not None
                else KFold(folds, shuffle=True, random_state=seed))
    c = clf.strategy_info_.get("probe_c")
    c = c if isinstance(c, int | float) else None  # one C per label (multilabel): chosen again per fold
    outputs: np.ndarray | None = None
    head = copy.deepcopy(clf.model_.head).eval()  # each fold's probe runs through the run's own head
    for train_idx, test_idx in splitter.split(features, targets if counts is not None else None):
        fitted = task.fit_probe(features[train_idx], targets[train_idx], c=c, seed=seed)
        set_linear_head(head, fitted.weight, fitted.bias)
        with torch.inference_mode():  # a linear head: the probe's scores; verification's: unit embeddings, cosines
            rows = torch.from_numpy(np.asarray(features[test_idx], np.float32)).to(next(head.parameters()).device)
            fold = head(rows).float().cpu().numpy()  # (n_fold, K)
        if outputs is None:
            outputs = np.zeros((len(samples), fold.shape[1]), dtype=np.float32)
        outputs[test_idx] = fold
    assert outputs is not None
    return "cross-validation", samples, task.decode(outputs)


def gather(clf: TransferEstimator, *, seed: int = 0) -> Evidence | None:
    """The evidence of a just-fitted estimator, through its task's report view; None without data."""
    from transferkit.features import extract_features
    from transferkit.report.views import view_for

    found = held_out(clf, seed=seed)
    if found is None:
        return None
    source, samples, scores = found
    view = view_for(clf.task_.name)
    rows = view.rows(clf.task_, samples, scores)
    worst = view.worst(clf.task_, samples, scores, rows)[:WORST]
    examples = [{"origin": samples.origins[i], "media": media(samples.items[i], samples.modality),
                 **view.example(clf.task_, samples, scores, rows, int(i))} for i in worst]
    mapped = samples.subset(np.arange(min(len(samples), MAX_MAP_ROWS)))
    map_labels = view.map_labels(mapped)
    features = None
    if map_labels:  # a map is drawn where the view names what to colour it by
        features = extract_features(clf.model_.backbone, mapped, batch_size=clf.batch_size,
                                    use_cache=not clf.backbone_trained_, progress=False).astype(np.float16)
    metrics = clf.task_.metrics(samples.labels, scores) if samples.labels else None
    return Evidence(source=source, task=clf.task_.name, rows=rows, examples=examples, map_labels=map_labels,
                    features=features, metrics=metrics)


def media(item: Any, modality: str) -> dict[str, str]:
    """A small, self-contained rendering of one input: ``{"kind": "image"|"audio"|"text", "data": ...}``
    (a JPEG or WAV data URI, or a text snippet)."""
    if modality == "image":
        from transferkit.data.decode import load_image

        image = load_image(item).convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        return {"kind": "image", "data": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}
    if modality == "audio":
        import soundfile

        from transferkit.data.decode import DEFAULT_SAMPLE_RATE, load_audio

        waveform = load_audio(item)[: int(AUDIO_SECONDS * DEFAULT_SAMPLE_RATE)]
        buffer = io.BytesIO()
        soundfile.write(buffer, waveform, DEFAULT_SAMPLE_RATE, format="WAV", subtype="PCM_16")
        return {"kind": "audio", "data": "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()}
    text = getattr(item, "text", item)
    text = str(text)
    return {"kind": "text", "data": text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"}


def write_evidence(run: str | Path, evidence: Evidence) -> Path:
    """Store ``evidence`` in ``RUN/report/`` (atomic writes); returns that folder."""
    from safetensors.numpy import save_file

    folder = Path(run) / REPORT_FOLDER
    folder.mkdir(exist_ok=True)
    write_json(folder / EVIDENCE, evidence.to_json())
    if evidence.features is not None and len(evidence.features):
        features = np.ascontiguousarray(evidence.features)
        atomic_write(folder / FEATURES, lambda tmp: save_file({"features": features}, str(tmp)))
    return folder


def read_evidence(run: str | Path) -> Evidence | None:
    """The evidence stored in a run directory, or None when it holds none (a run fitted without a report)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(run) / REPORT_FOLDER
    path = folder / EVIDENCE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        features = load_file(str(folder / FEATURES))["features"] if (folder / FEATURES).is_file() else None
        return Evidence(source=data["source"], task=data["task"], rows=data["rows"],
                        examples=data.get("examples", []), map_labels=data.get("map_labels", []), features=features,
                        metrics=data.get("metrics"))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ArtifactError(f"{folder} holds unreadable report evidence: {exc}") from exc
