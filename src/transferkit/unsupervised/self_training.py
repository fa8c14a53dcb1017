"""Self-training without target labels: refit on one's own most confident predictions, a few rounds.

The start is any model that gives class probabilities on unlabelled data: a zero-shot classifier
or a clustering of pretrained features. Each round keeps the most confident share of every
predicted class (``confident_pseudo_labels``: class-balanced, as in CBST, Zou et al. 2018), fits a
classifier on those pseudo-labels and predicts all samples again; the share grows from round to
round (curriculum: the easy samples first). A probe trained on features learns a decision
boundary that follows the feature space's own structure, which usually corrects part of the
start's errors; it cannot correct a start that is wrong on most of a class.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from transferkit.adapt.selection import confident_pseudo_labels
from transferkit.backbones import Backbone
from transferkit.config import known_keys
from transferkit.data import Samples, samples_from_arrays
from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.features import extract_features
from transferkit.heads import set_linear_head
from transferkit.model import build_model
from transferkit.strategies import STRATEGIES
from transferkit.strategies.linear_probe import fit_probe
from transferkit.tasks import Classification

if TYPE_CHECKING:  # the estimator imports every strategy; adapt is imported by some of them
    from transferkit.estimator import TransferClassifier


@dataclass
class SelfTrainingRound:
    """What one round did: how many pseudo-labels it used and how many predictions it changed."""

    round: int
    fraction: float
    pseudo_labels: int
    changed: float
    class_counts: list[int]
    probe_c: float | None = None


@dataclass
class SelfTrainingResult:
    """A linear classifier ``(weight (C, D), bias (C,))`` on raw features and its final probabilities."""

    weight: np.ndarray
    bias: np.ndarray
    probabilities: np.ndarray
    history: list[SelfTrainingRound] = field(default_factory=list)


def round_fractions(rounds: int, fraction: float, final_fraction: float) -> list[float]:
    """The share of each predicted class pseudo-labelled in each round: linear from ``fraction`` to
    ``final_fraction``.

    Raises:
        ConfigError: fewer than one round, or a share outside (0, 1].
    """
    if rounds < 1:
        raise ConfigError(f"self-training needs at least one round, not {rounds}")
    for name, value in (("fraction", fraction), ("final_fraction", final_fraction)):
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{name} must be in (0, 1], not {value}")
    return np.linspace(fraction, final_fraction, rounds).tolist() if rounds > 1 else [fraction]


def self_train(features: np.ndarray, start_probs: np.ndarray, *, rounds: int = 3, fraction: float = 0.3,
               final_fraction: float = 0.8, c: float | None = None, seed: int = 0) -> SelfTrainingResult:
    """Self-train a linear probe on ``features`` from the predictions ``start_probs``.

    Args:
        features: ``(N, D)`` features of the unlabelled samples.
        start_probs: ``(N, C)`` class probabilities of the start (zero-shot, clustering, ...).
        rounds: refits; each uses the pseudo-labels of the previous round's predictions.
        fraction: share of each predicted class kept in the first round.
        final_fraction: share kept in the last round.
        c: inverse L2 strength of the probe (None: chosen by cross-validation on the pseudo-labels).
        seed: random seed of the probe.

    Returns:
        The last round's probe and probabilities, and per-round statistics. A class that no sample
        is predicted as gets a bias that rules it out (with a warning); if fewer than two classes
        remain, training stops early and the last probabilities are kept.

    Raises:
        DataError: ``features`` and ``start_probs`` disagree in length, or fewer than two classes.
    """
    features = np.asarray(features, dtype=np.float32)
    probs = np.asarray(start_probs, dtype=np.float64)
    if probs.ndim != 2 or features.ndim != 2 or len(features) != len(probs):
        raise DataError(f"features {features.shape} and start probabilities {probs.shape} do not match")
    num_classes = probs.shape[1]
    if num_classes < 2:
        raise DataError("self-training needs probabilities over at least two classes")
    weight = np.zeros((num_classes, features.shape[1]), np.float32)
    bias = np.zeros(num_classes, np.float32)
    history: list[SelfTrainingRound] = []
    for number, share in enumerate(round_fractions(rounds, fraction, final_fraction), 1):
        indices, labels = confident_pseudo_labels(probs, fraction=share)
        present = np.unique(labels)
        if len(present) < 2:
            warnings.warn(f"self-training stopped at round {number}: every sample is predicted as one class",
                          stacklevel=2)
            break
        if len(present) < num_classes:
            missing = sorted(set(range(num_classes)) - set(present.tolist()))
            warnings.warn(f"self-training round {number}: no sample is predicted as class(es) {missing}; "
                          "they are dropped", stacklevel=2)
        # fit on the classes that are present, then place their rows back among all classes
        local = np.searchsorted(present, labels)
        w, b, chosen = fit_probe(features[indices], local, len(present), c=c, seed=seed)
        weight[:], bias[:] = 0.0, -1e4
        weight[present], bias[present] = w, b
        previous = probs.argmax(axis=1)
        probs = softmax(features.astype(np.float64) @ weight.T + bias, axis=1)
        history.append(SelfTrainingRound(round=number, fraction=float(share), pseudo_labels=int(len(indices)),
                                         changed=float((probs.argmax(axis=1) != previous).mean()),
                                         class_counts=np.bincount(labels, minlength=num_classes).tolist(),
                                         probe_c=chosen))
    return SelfTrainingResult(weight=weight, bias=bias, probabilities=probs, history=history)


def probe_classifier(backbone: Backbone, classes: list[str], weight: np.ndarray, bias: np.ndarray, *,
                     info: dict[str, Any], fit_seconds: float, batch_size: int, seed: int) -> TransferClassifier:
    """A fitted linear-probe ``TransferClassifier`` holding ``weight`` and ``bias`` on ``backbone``.

    It is what ``fit(strategy="linear_probe")`` would have built had the pseudo-labels been real
    ones: it predicts, evaluates and saves a run directory that ``transferkit predict`` loads.
    """
    from transferkit.estimator import TransferClassifier

    spec = backbone.spec
    clf = TransferClassifier(backbone=spec.name, strategy="linear_probe", pretrained=spec.pretrained,
                             backbone_options=dict(spec.options) or None, batch_size=batch_size, seed=seed,
                             progress=False)
    task = Classification(classes)
    model = build_model(backbone, task)
    set_linear_head(model.head, weight, bias)
    return clf.with_model(model, task, strategy_info=info, fit_seconds=fit_seconds)


class SelfTrainingClassifier(ClassifierMixin, BaseEstimator):
    """Self-training from an unsupervised start, on unlabelled inputs only.

    Args:
        starter: an estimator with ``fit(X)``, ``predict_proba(X)``, ``classes_`` and a fitted
            ``backbone_`` (``ZeroShotClassifier``, ``FeatureClusterer``); it is cloned, then fitted
            on ``X``.
        strategy: how each round fits its pseudo-labels: ``linear_probe`` (a probe on the cached
            features of the starter's backbone; fast) or any other registered strategy
            (``finetune``, ``lora``, ...), refitted from the pretrained weights every round.
        rounds, fraction, final_fraction: the schedule (see ``self_train``).
        probe_c: the probe's inverse L2 strength (None: cross-validated on the pseudo-labels).
        epochs, lr, batch_size: for fine-tuning strategies (see ``TransferClassifier``).
        seed: random seed.
        progress: show progress bars.

    Attributes:
        starter_: the fitted start; classifier_: the last round's ``TransferClassifier``;
        history_: per-round statistics (dicts of ``SelfTrainingRound``).

    Example:
        >>> start = ZeroShotClassifier(["negative", "positive"], templates=["this review is {}.", "{}"])
        >>> SelfTrainingClassifier(start, rounds=3).fit(reviews).predict(reviews)
    """

    def __init__(self, starter: Any, *, strategy: str = "linear_probe", rounds: int = 3, fraction: float = 0.3,
                 final_fraction: float = 0.8, probe_c: float | None = None, epochs: int | None = None,
                 lr: float | None = None, batch_size: int = 32, seed: int = 0, progress: bool = False) -> None:
        self.starter = starter
        self.strategy = strategy
        self.rounds = rounds
        self.fraction = fraction
        self.final_fraction = final_fraction
        self.probe_c = probe_c
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> SelfTrainingClassifier:
        """Fit the starter on ``X``, then self-train on ``X``; ``y`` is ignored (no label is used).

        Raises:
            ConfigError: a bad schedule or an unknown strategy.
            DataError: unusable inputs.
        """
        fractions = round_fractions(self.rounds, self.fraction, self.final_fraction)
        if isinstance(X, Samples):  # labels that came with the data must not leak into training
            X = Samples(items=X.items, labels=None, modality=X.modality, origins=X.origins)
        start = time.perf_counter()
        starter = clone(self.starter).fit(X)
        backbone: Backbone | None = getattr(starter, "backbone_", None)
        if backbone is None:
            raise ConfigError("self-training needs a starter that embeds its inputs with a backbone "
                              f"({type(starter).__name__} was fitted without one)")
        samples = X if isinstance(X, Samples) else samples_from_arrays(X, None, modality=backbone.modality)
        probs = starter.predict_proba(samples)
        classes = [str(c) for c in starter.classes_]
        if self.strategy == "linear_probe":  # the features never change: train on them once extracted
            features = extract_features(backbone, samples, batch_size=self.batch_size, progress=self.progress)
            result = self_train(features, probs, rounds=self.rounds, fraction=self.fraction,
                                final_fraction=self.final_fraction, c=self.probe_c, seed=self.seed)
            history = [asdict(r) for r in result.history]
            classifier = probe_classifier(backbone, classes, result.weight, result.bias,
                                          info={"self_training": history}, fit_seconds=time.perf_counter() - start,
                                          batch_size=self.batch_size, seed=self.seed)
        else:
            classifier, history = self._fit_rounds(samples, probs, classes, backbone, fractions)
        self.starter_, self.classifier_, self.history_ = starter, classifier, history
        self.classes_ = np.array(classes)
        self.backbone_ = classifier.model_.backbone
        return self

    def _fit_rounds(self, samples: Samples, probs: np.ndarray, classes: list[str], backbone: Backbone,
                    fractions: list[float]) -> tuple[TransferClassifier, list[dict[str, Any]]]:
        """Self-training with a strategy that trains the backbone: a new fit from pretrained weights per round."""
        from transferkit.estimator import TransferClassifier

        spec = backbone.spec
        # the probe's C applies to the strategies that fit a probe (lp_ft, contrastive)
        takes_c = "c" in known_keys(STRATEGIES.get(self.strategy).config)
        probe_params = {"c": self.probe_c} if takes_c and self.probe_c is not None else None
        classifier: TransferClassifier | None = None
        history: list[dict[str, Any]] = []
        for number, share in enumerate(fractions, 1):
            indices, labels = confident_pseudo_labels(probs, fraction=share)
            if len(np.unique(labels)) < 2:
                warnings.warn(f"self-training stopped at round {number}: every sample is predicted as one class",
                              stacklevel=3)
                break
            subset = samples.subset(indices)
            subset.labels = [classes[i] for i in labels]
            classifier = TransferClassifier(backbone=spec.name, strategy=self.strategy, pretrained=spec.pretrained,
                                            backbone_options=dict(spec.options) or None, epochs=self.epochs,
                                            lr=self.lr, batch_size=self.batch_size, strategy_params=probe_params,
                                            val_fraction=0.0, seed=self.seed, progress=self.progress)
            classifier.fit(subset)
            # classes never predicted are missing from the round's classifier: their probability is 0
            round_probs = classifier.predict_proba(samples)
            full = np.zeros((len(samples), len(classes)))
            full[:, [classes.index(c) for c in classifier.classes_]] = round_probs
            previous = probs.argmax(axis=1)
            probs = full
            history.append(asdict(SelfTrainingRound(
                round=number, fraction=float(share), pseudo_labels=int(len(indices)),
                changed=float((probs.argmax(axis=1) != previous).mean()),
                class_counts=np.bincount(labels, minlength=len(classes)).tolist())))
        if classifier is None:
            raise DataError("self-training could not start: the starter predicts a single class for every sample")
        return classifier, history

    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise NotFittedError("this SelfTrainingClassifier is not fitted yet; call fit first")

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(N, C)`` probabilities of the last round's classifier, in the order of ``classes_``."""
        self._check_fitted()
        round_probs = self.classifier_.predict_proba(X)
        classes = self.classes_.tolist()
        full = np.zeros((len(round_probs), len(classes)))
        full[:, [classes.index(c) for c in self.classifier_.classes_]] = round_probs
        return full

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class names."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
