"""Verification: embeddings in which clips or images of one identity (a speaker, a face) sit close.

The head maps the backbone's pooled features to a unit-length embedding of the same width
(``EmbeddingHead``) and, for training, to its cosine with one learned proxy per identity. Fine-tuning
trains both with an additive angular margin softmax (AAM, ArcFace: Deng et al. 2019) on the one
loop; the linear probe standardises the frozen features (the projection is then the identity,
scaled). After either, ``after_fit``:

* enrols every training identity: the mean embedding of its training samples, L2-normalised;
* chooses two thresholds on validation data at their equal error rate: one for a pair of samples
  (``transferkit verify RUN a.wav b.wav``: same identity or not) and one for a sample against an
  enrolled identity (identification: below it the answer is ``unknown``).

Scores (``decode``) are the cosines of each sample with each enrolled identity; metrics are the EER
over all (sample, enrolled identity) trials, the accuracy at the chosen threshold, and open-set
identification accuracy, where samples of identities never enrolled count as correct when answered
``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import DataError
from transferkit.tasks.base import TASKS, ProbeFit, Task, standardised_features

if TYPE_CHECKING:
    from transferkit.data import Samples
    from transferkit.heads import TransferModel

UNKNOWN = "unknown"
# AAM softmax: logits are SCALE * cos, with MARGIN radians added to the angle of the true identity
SCALE = 30.0
MARGIN = 0.2


class EmbeddingHead(nn.Module):
    """``(B, D) -> (B, E + K)``: the unit-length embedding ``(B, E)`` then its cosine with each of the K
    identity proxies ``(B, K)``. ``fc`` starts as the identity map (E = D), so a fine-tune starts from
    the backbone's own geometry; the linear probe writes its projection into it."""

    def __init__(self, in_features: int, num_identities: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, in_features)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(in_features))
            self.fc.bias.zero_()
        self.proxies = nn.Parameter(torch.randn(num_identities, in_features) / in_features**0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embedding = F.normalize(self.fc(self.dropout(features)), dim=-1)  # (B, E)
        cosines = embedding @ F.normalize(self.proxies, dim=-1).T  # (B, K)
        return torch.cat([embedding, cosines], dim=-1)


def additive_angular_margin_loss(cosines: torch.Tensor, targets: torch.Tensor, *, scale: float = SCALE,
                                 margin: float = MARGIN, reduction: str = "mean") -> torch.Tensor:
    """ArcFace's loss: cross-entropy of ``scale * cos(theta + margin)`` for the true identity and
    ``scale * cos(theta)`` for the others; ``cosines (B, K)``, ``targets (B,)`` (-1: ignored)."""
    known = targets >= 0
    theta = torch.acos(cosines.float().clamp(-1 + 1e-6, 1 - 1e-6))  # (B, K)
    true = F.one_hot(targets.clamp(min=0), cosines.shape[1]).bool() & known[:, None]
    logits = scale * torch.where(true, torch.cos(theta + margin), cosines.float())
    return F.cross_entropy(logits, targets, ignore_index=-1, reduction=reduction)


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(EER, threshold)`` of trials with similarity ``scores`` and truth ``same`` (bool).

    The threshold is where the false-acceptance and false-rejection rates cross (``score >= threshold``
    accepts), halfway between the lowest accepted and the highest rejected score there; the EER is
    the mean of the two rates.

    Raises:
        DataError: the trials lack same-identity or different-identity pairs.
    """
    from sklearn.metrics import roc_curve

    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise DataError("an equal error rate needs same-identity and different-identity trials; "
                        "give at least two samples of an identity and two identities")
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    best = int(np.argmin(np.abs(fnr - fpr)))
    # halfway to the next lower score: the accepted and rejected trials stay the same, with room on both sides
    below = thresholds[best + 1] if best + 1 < len(thresholds) else thresholds[best]
    threshold = (min(thresholds[best], 1.0) + below) / 2
    return float((fpr[best] + fnr[best]) / 2), float(threshold)


def pair_trials(embeddings: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and same-identity truth of every unordered pair of (unit-length) embeddings."""
    upper = np.triu_indices(len(labels), k=1)
    names = np.asarray(labels)
    return (embeddings @ embeddings.T)[upper], (names[:, None] == names[None, :])[upper]


@TASKS.register("verification", description="embeddings where one identity's samples sit close (AAM softmax); "
                "enrolment, verify two inputs, identification with 'unknown'; EER")
class Verification(Task):
    """Targets are identity indices into the sorted identities seen in training (-1: not enrolled)."""

    score_name = "auc"
    probabilistic = False

    def __init__(self) -> None:
        self.identities: list[str] = []
        self.embedding_dim = 0
        self.centroids: np.ndarray | None = None  # (K, E), unit rows
        self.pair_threshold: float | None = None
        self.enrol_threshold: float | None = None

    # -- targets ----------------------------------------------------------------------------------
    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Verification:
        names, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
        if len(names) < 2:
            raise DataError("verification needs at least two identities" + (f"; found only {names[0]!r}"
                                                                           if len(names) else ""))
        if counts.min() < 2:
            raise DataError(f"identity {str(names[counts.argmin()])!r} has one sample; verification needs at "
                            "least two of each identity (to enrol it and to check the threshold)")
        self.identities = [str(n) for n in names]
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        index = {name: i for i, name in enumerate(self.identities)}
        return np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)  # unseen: not enrolled

    @property
    def names(self) -> list[str]:
        return list(self.identities)

    def split(self, labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """About ``fraction`` of each identity held out, but two at least (a same-identity pair to set the
        threshold on) and two kept for enrolment; identities of fewer than four samples all train."""
        names = np.asarray([str(v) for v in labels])
        rng = np.random.default_rng(seed)
        held: list[int] = []
        for identity in sorted(set(names)):
            members = rng.permutation(np.flatnonzero(names == identity))
            if len(members) >= 4:
                held += members[: min(max(2, round(fraction * len(members))), len(members) - 2)].tolist()
        val = np.sort(np.asarray(held, dtype=np.int64))
        return np.setdiff1d(np.arange(len(names)), val), val

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"identities": list(self.identities), "embedding_dim": self.embedding_dim}
        if self.centroids is not None:
            state |= {"centroids": np.round(self.centroids, 6).tolist(), "pair_threshold": self.pair_threshold,
                      "enrol_threshold": self.enrol_threshold}
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.identities = [str(n) for n in state["identities"]]
        self.embedding_dim = int(state.get("embedding_dim", 0))
        if state.get("centroids") is not None:
            self.centroids = np.asarray(state["centroids"], dtype=np.float32)
            self.pair_threshold = float(state["pair_threshold"])
            self.enrol_threshold = float(state["enrol_threshold"])

    # -- model ------------------------------------------------------------------------------------
    def num_outputs(self) -> int:
        return self.embedding_dim + len(self.identities)

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        self.check_fitted()
        self.embedding_dim = num_features
        return EmbeddingHead(num_features, len(self.identities), dropout=dropout)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        return additive_angular_margin_loss(outputs[:, self.embedding_dim:], targets, reduction=reduction)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """ROC AUC of the validation samples' pairs: same identity or not, by cosine."""
        from sklearn.metrics import roc_auc_score

        cosines, same = pair_trials(outputs[:, : self.embedding_dim].float().cpu().numpy(),
                                    [str(t) for t in targets.tolist()])
        return float(roc_auc_score(same, cosines)) if 0 < same.sum() < len(same) else 0.5

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """The frozen features, standardised (dead dimensions dropped): ``fc`` becomes ``(x - mean) / scale``."""
        _, mean, scale = standardised_features(features)
        weight = np.diag(np.where(np.isinf(scale), 0.0, 1.0 / np.where(np.isinf(scale), 1.0, scale)))
        return ProbeFit(weight.astype(np.float32), (-weight @ mean).astype(np.float32),
                        {"projection": "standardised frozen features"})

    # -- enrolment and thresholds -----------------------------------------------------------------
    def embeddings(self, model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                   progress: bool = False) -> np.ndarray:
        """Unit-length embeddings ``(N, E)`` of ``samples``."""
        model.eval()
        outputs = self.predict_outputs(model, samples, batch_size=batch_size, use_cache=use_cache, progress=progress)
        return outputs[:, : self.embedding_dim]

    def after_fit(self, model: TransferModel, train: Samples, val: Samples | None, *, batch_size: int,
                  use_cache: bool) -> dict[str, Any]:
        """Enrol the training identities and choose both thresholds on validation data.

        Without a validation split (the linear probe keeps none) a stratified fifth of the training
        samples is set aside for the thresholds; enrolment then uses all training samples.
        """
        def embed(samples: Samples) -> np.ndarray:
            return self.embeddings(model, samples, batch_size=batch_size, use_cache=use_cache)

        train_emb = embed(train)
        labels = [str(v) for v in train.labels or []]
        if val is None or not len(val):
            fit_idx, cal_idx = self.split(labels, 0.2, seed=0)
            cal_emb, cal_labels = train_emb[cal_idx], [labels[i] for i in cal_idx]
            enrol_for_thresholds = self._centroids(train_emb[fit_idx], [labels[i] for i in fit_idx])
        else:
            cal_emb, cal_labels = embed(val), [str(v) for v in val.labels or []]
            enrol_for_thresholds = self._centroids(train_emb, labels)
        pair_eer, self.pair_threshold = equal_error_rate(*pair_trials(cal_emb, cal_labels))
        sims = cal_emb @ enrol_for_thresholds.T  # (M, K)
        truth = np.asarray(cal_labels)[:, None] == np.asarray(self.identities)[None, :]
        enrol_eer, self.enrol_threshold = equal_error_rate(sims.ravel(), truth.ravel())
        self.centroids = self._centroids(train_emb, labels)
        return {"pair_threshold": self.pair_threshold, "enrol_threshold": self.enrol_threshold,
                "calibration_pair_eer": pair_eer, "calibration_enrol_eer": enrol_eer,
                "calibration_samples": len(cal_labels)}

    def _centroids(self, embeddings: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        names = np.asarray(labels)
        rows = [embeddings[names == identity].mean(axis=0) for identity in self.identities]
        centroids = np.stack(rows)
        return (centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(min=1e-12)).astype(np.float32)

    def check_enrolled(self) -> None:
        if self.centroids is None:
            raise DataError("this verification model has no enrolled identities or thresholds yet; fit it first")

    # -- predictions ------------------------------------------------------------------------------
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Cosines ``(N, K)`` of each sample's embedding with each enrolled identity; before enrolment (a head
        straight off the loop), with the head's identity proxies."""
        if self.centroids is None:
            return outputs[:, self.embedding_dim:]
        return outputs[:, : self.embedding_dim] @ self.centroids.T

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        """The most similar enrolled identity, or ``unknown`` below the threshold (none before enrolment)."""
        names = np.array(self.identities, dtype=object)[scores.argmax(axis=1)]
        if self.enrol_threshold is None:
            return names
        return np.where(scores.max(axis=1) >= self.enrol_threshold, names, UNKNOWN)

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        """EER, ROC AUC and accuracy at the chosen threshold over every (sample, enrolled identity) trial, and
        open-set identification accuracy."""
        from sklearn.metrics import roc_auc_score

        labels = [str(v) for v in labels]
        truth = np.asarray(labels)[:, None] == np.asarray(self.identities)[None, :]
        eer, eer_threshold = equal_error_rate(scores.ravel(), truth.ravel())
        threshold = eer_threshold if self.enrol_threshold is None else self.enrol_threshold
        expected = np.array([v if v in self.identities else UNKNOWN for v in labels], dtype=object)
        return {"n": len(labels), "trials": int(truth.size), "eer": eer,
                "auc": float(roc_auc_score(truth.ravel(), scores.ravel())),
                "threshold": threshold, "threshold_from": "validation" if self.enrol_threshold is not None
                else "these trials (not enrolled yet)",
                "accuracy_at_threshold": float(((scores >= threshold) == truth).mean()),
                "identification_accuracy": float((self.predictions(scores) == expected).mean()),
                "not_enrolled": int((expected == UNKNOWN).sum())}

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        return (f"EER {100 * metrics['eer']:.2f} %   accuracy at threshold {metrics['threshold']:.3f}: "
                f"{100 * metrics['accuracy_at_threshold']:.2f} %   AUC {metrics['auc']:.4f}   "
                f"({metrics['trials']} sample-identity trials)\n"
                f"identification accuracy {100 * metrics['identification_accuracy']:.2f} %   n={metrics['n']} "
                f"({metrics['not_enrolled']} of identities not enrolled, expected 'unknown')")

    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        order = scores.argsort()[::-1][: max(1, top_k)]
        return {"identity": str(self.predictions(scores[None])[0]), "threshold": self.enrol_threshold,
                "similarity": {self.identities[i]: float(scores[i]) for i in order}}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        shown = "  ".join(f"{name}={s:.3f}" for name, s in record["similarity"].items())
        return [record["identity"], shown]

    def verify(self, first: np.ndarray, second: np.ndarray) -> dict[str, Any]:
        """Score two embeddings ``(E,)``: their cosine and the decision at the pair threshold."""
        self.check_enrolled()
        score = float(first @ second)
        return {"score": score, "threshold": self.pair_threshold, "same": bool(score >= self.pair_threshold)}
