"""Rank candidate backbones for a labelled dataset by transferability scores, before any training.

Each candidate's frozen features are extracted once (through the same disk cache as the linear
probe, so a later ``fit --strategy linear_probe`` with the chosen backbone reuses them), its
source head's probabilities are computed when a score needs them and the backbone has one, and
every requested score is computed on those arrays.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from transferkit.backbones import BACKBONES, BackboneSpec, create_backbone
from transferkit.backbones.base import weights_installed
from transferkit.data import Samples
from transferkit.errors import ConfigError, DataError
from transferkit.features import extract_features
from transferkit.select.scores import SCORES, compute_score

# LogME ranked fine-tuned accuracy best across our four benchmark tasks (mean Kendall tau 0.92) and, unlike the
# cross-validated probes, was not fooled by random features (benchmarks/results/rank.md).
DEFAULT_SCORE = "logme"
DEFAULT_SCORES: tuple[str, ...] = ("logme", "leep", "nce", "h_score", "h_score_shrink", "knn_cv", "linear_cv")
SCRATCH_PREFIX = "scratch:"


def parse_candidate(text: str | BackboneSpec, options: dict[str, Any] | None = None) -> BackboneSpec:
    """A candidate as a ``BackboneSpec``: ``NAME`` is pretrained, ``scratch:NAME`` the same net randomly initialised.

    Args:
        text: a backbone name (``efficientnet_lite1``, ``timm:resnet18``, ...), ``scratch:NAME``, or a spec
            (returned as is).
        options: backbone options (image size, max length) applied to every named candidate.
    """
    if isinstance(text, BackboneSpec):
        return text
    name = text.strip()
    pretrained = not name.startswith(SCRATCH_PREFIX)
    if not pretrained:
        name = name[len(SCRATCH_PREFIX):]
    if not name:
        raise ConfigError(f"empty backbone name in candidate {text!r}")
    return BackboneSpec(name=name, pretrained=pretrained, options=dict(options or {}))


def candidate_label(spec: BackboneSpec) -> str:
    """How a candidate is shown and named on the command line."""
    return spec.name if spec.pretrained else SCRATCH_PREFIX + spec.name


def offline_candidates(modality: str) -> list[str]:
    """Every registered zoo backbone of ``modality`` whose pretrained weights are installed here (decoders only
    when named: see ``BackboneEntry.default_candidate``)."""
    return [entry.name for entry in BACKBONES
            if entry.offline and entry.pretrained_weights and entry.default_candidate and entry.modality == modality
            and weights_installed(entry)]


@dataclass
class CandidateScores:
    """One row of a ranking.

    Attributes:
        candidate: the name as given (``scratch:NAME`` for a random initialisation).
        spec: the backbone spec the features came from.
        num_features: feature dimension D.
        scores: score name to value; None where the score does not apply (no source head).
        extract_seconds: time to build the backbone and extract (or load cached) features.
        score_seconds: time spent computing the scores.
    """

    candidate: str
    spec: BackboneSpec
    num_features: int
    scores: dict[str, float | None]
    extract_seconds: float
    score_seconds: float

    @property
    def seconds(self) -> float:
        return self.extract_seconds + self.score_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict(), "seconds": self.seconds}


@dataclass
class Ranking:
    """Candidates sorted by ``sort_by`` (best first; candidates without a value last).

    Attributes:
        rows: one ``CandidateScores`` per candidate, best first.
        sort_by: the score the rows are sorted by.
        scores: the scores computed, in the order requested.
        n_samples: number of labelled samples scored.
        num_classes: number of classes.
        seconds: wall time of the whole ranking.
    """

    rows: list[CandidateScores]
    sort_by: str
    scores: list[str]
    n_samples: int
    num_classes: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> str:
        """The top candidate's name."""
        return self.rows[0].candidate

    def to_dict(self) -> dict[str, Any]:
        return {"sort_by": self.sort_by, "scores": self.scores, "n_samples": self.n_samples,
                "num_classes": self.num_classes, "seconds": self.seconds, "notes": self.notes,
                "rows": [row.to_dict() for row in self.rows]}

    def format(self) -> str:
        """A plain-text table, best candidate first, the sort score marked with ``*``."""
        names = [f"{s}*" if s == self.sort_by else s for s in self.scores]
        width = max(9, *(len(row.candidate) for row in self.rows))
        header = f"{'rank':<5}{'candidate':<{width + 2}}{'dim':>6}" + "".join(f"{n:>16}" for n in names)
        lines = [header + f"{'seconds':>10}"]
        for i, row in enumerate(self.rows, start=1):
            cells = "".join(f"{'-':>16}" if row.scores[s] is None else f"{row.scores[s]:>16.4f}"
                            for s in self.scores)
            lines.append(f"{i:<5}{row.candidate:<{width + 2}}{row.num_features:>6}{cells}{row.seconds:>10.1f}")
        lines.append(f"{len(self.rows)} candidates ranked by {self.sort_by} on {self.n_samples} samples, "
                     f"{self.num_classes} classes, in {self.seconds:.1f}s")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


@torch.inference_mode()
def source_probabilities(backbone: Any, features: np.ndarray, batch_size: int = 1024) -> np.ndarray | None:
    """Softmax of the backbone's pretrained source head on its pooled features, or None without a head."""
    if backbone._modules.get("pretrained_head") is None:
        return None
    chunks = []
    for start in range(0, len(features), batch_size):
        logits = backbone.source_logits(torch.from_numpy(features[start:start + batch_size]).float())
        chunks.append(torch.softmax(logits.double(), dim=-1).numpy())
    return np.concatenate(chunks)


def rank_backbones(samples: Samples, candidates: Sequence[str | BackboneSpec] | None = None,
                   scores: Sequence[str] = DEFAULT_SCORES, *, sort_by: str | None = None,
                   backbone_options: dict[str, Any] | None = None, batch_size: int = 32,
                   use_cache: bool = True, progress: bool = True) -> Ranking:
    """Score every candidate backbone on labelled ``samples`` and sort them, best first.

    Args:
        samples: labelled samples of one modality (``transferkit.data.read_dataset``).
        candidates: backbone names (``scratch:NAME`` for a random initialisation) or specs; default:
            every offline zoo backbone of the samples' modality.
        scores: registered score names (``transferkit scores``).
        sort_by: the score to sort by; default ``logme`` when requested, else the first score.
        backbone_options: options (``image_size``, ``max_length``) for candidates given by name.
        batch_size: feature-extraction batch size.
        use_cache: read and write the feature cache shared with ``linear_probe``.
        progress: show progress bars.

    Returns:
        A ``Ranking``; ``ranking.format()`` is the table the CLI prints.

    Raises:
        DataError: unlabelled samples, fewer than two classes, or a candidate of another modality.
        ConfigError: an unknown score, no candidates, or ``sort_by`` not among ``scores``.
        BackboneError: an unknown backbone or weights that cannot be loaded.

    Example:
        >>> ranking = rank_backbones(read_dataset("photos/"), ["efficientnet_lite0", "efficientnet_lite2"])
        >>> print(ranking.format())
    """
    start = time.perf_counter()
    if samples.labels is None:
        raise DataError("ranking backbones needs labelled data")
    classes = samples.classes
    if len(classes) < 2:
        raise DataError(f"ranking backbones needs at least two classes, found {classes}")
    scores = list(dict.fromkeys(scores))
    if not scores:
        raise ConfigError("no scores to rank by")
    entries = [SCORES.get(name) for name in scores]
    sort_by = sort_by or (DEFAULT_SCORE if DEFAULT_SCORE in scores else scores[0])
    if sort_by not in scores:
        raise ConfigError(f"cannot sort by {sort_by!r}: it is not among the scores {scores}")
    if candidates is None:
        candidates = offline_candidates(samples.modality)
    specs = [parse_candidate(c, backbone_options) for c in candidates]
    if not specs:
        raise ConfigError(f"no candidate backbones for {samples.modality} data")
    if len({s.cache_key() for s in specs}) != len(specs):
        raise ConfigError(f"candidates repeat: {[candidate_label(s) for s in specs]}")

    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[v] for v in samples.labels], dtype=np.int64)
    rows, notes = [], []
    for spec in specs:
        tick = time.perf_counter()
        backbone = create_backbone(spec)
        if backbone.modality != samples.modality:
            raise DataError(f"candidate {candidate_label(spec)!r} takes {backbone.modality} but the data is "
                            f"{samples.modality}")
        features = extract_features(backbone, samples, batch_size=batch_size, use_cache=use_cache,
                                    progress=progress)
        probs = source_probabilities(backbone, features) if any(e.needs_source_probs for e in entries) else None
        extracted = time.perf_counter()
        values: dict[str, float | None] = {}
        for entry in entries:
            if entry.needs_source_probs and probs is None:
                values[entry.name] = None
                continue
            values[entry.name] = compute_score(entry.name, features, labels, source_probs=probs)
        rows.append(CandidateScores(candidate_label(spec), spec, int(features.shape[1]), values,
                                    extracted - tick, time.perf_counter() - extracted))
        del backbone
    without = [row.candidate for row in rows if row.scores[sort_by] is None]
    if without:
        notes.append(f"{sort_by} needs a pretrained source head; not available for {', '.join(without)}")
    rows.sort(key=lambda row: (row.scores[sort_by] is None, -(row.scores[sort_by] or 0.0)))
    return Ranking(rows, sort_by, scores, len(samples), len(classes), time.perf_counter() - start, notes)
