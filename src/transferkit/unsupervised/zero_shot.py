"""Zero-shot text classification: no labelled example, only the names (or descriptions) of the classes.

A sentence encoder maps a text and a short phrase naming a class into the same space; the class
whose phrase lies closest (cosine similarity) wins. Two calibrations make this usable:

* **prompt templates** ("this review is {}.", "{}"): each class is embedded through several
  templates and the normalised embeddings are averaged (the prompt ensembling of CLIP, Radford et
  al. 2021), so the result depends less on one wording;
* **prior correction** by centring: every class phrase has its own bias (some words sit closer to
  all sentences than others), which makes one class absorb most texts. Subtracting each class's
  mean similarity over the unlabelled texts being classified removes that bias. It assumes roughly
  balanced classes: a rare class's mean similarity is mostly its similarity to the other classes'
  texts, so centring then pushes many texts of the common class into the rare one (on SMS spam,
  13% spam, it costs 19 points of accuracy; see benchmarks/results/unlabelled.md).

Zero-shot is not a registered strategy: strategies fit a head to labelled data, and this needs
none. Its predictions can start self-training (``transferkit.unsupervised.self_training``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from transferkit.backbones import Backbone, BackboneSpec, create_backbone
from transferkit.data import Samples, samples_from_arrays
from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.features import extract_features

DEFAULT_TEMPLATES: tuple[str, ...] = ("{}", "this is {}.", "this text is about {}.")


def class_prompts(labels: Sequence[str], templates: Sequence[str],
                  descriptions: Mapping[str, str | Sequence[str]] | None = None) -> list[list[str]]:
    """The phrases that stand for each class: every template filled with the class's description(s).

    Args:
        labels: class names, in output order.
        templates: format strings with one ``{}`` (``"this review is {}."``).
        descriptions: optional text(s) to use instead of a class's name (``{"LOC": "a place"}``).

    Returns:
        One list of phrases per label.

    Raises:
        ConfigError: fewer than two labels, duplicate labels, no template, a template without
            ``{}``, or a description for a label that is not among ``labels``.
    """
    labels = [str(label) for label in labels]
    if len(labels) < 2:
        raise ConfigError(f"zero-shot classification needs at least two labels, got {labels}")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ConfigError(f"duplicate labels: {', '.join(duplicated)}")
    if not templates:
        raise ConfigError("no prompt template given")
    for template in templates:
        if template.count("{}") != 1:
            raise ConfigError(f"prompt template {template!r} must contain '{{}}' exactly once")
    descriptions = dict(descriptions or {})
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ConfigError(f"descriptions given for unknown labels {unknown}; labels are {labels}")
    prompts = []
    for label in labels:
        texts = descriptions.get(label, label)
        texts = [texts] if isinstance(texts, str) else list(texts)
        prompts.append([template.format(text) for template in templates for text in texts])
    return prompts


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def class_embeddings(backbone: Backbone, prompts: Sequence[Sequence[str]], *, batch_size: int = 32) -> np.ndarray:
    """``(C, D)`` unit vectors: per class, the renormalised mean of its prompts' unit embeddings."""
    flat = [text for texts in prompts for text in texts]
    samples = Samples(items=flat, labels=None, modality="text", origins=[f"prompt {t!r}" for t in flat])
    embedded = normalise_rows(extract_features(backbone, samples, batch_size=batch_size, progress=False))
    bounds = np.cumsum([0, *(len(texts) for texts in prompts)])
    means = np.stack([embedded[start:end].mean(axis=0) for start, end in zip(bounds[:-1], bounds[1:], strict=True)])
    return normalise_rows(means)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify texts by cosine similarity to class prompts, without labelled examples.

    ``fit`` sees only unlabelled texts: it embeds the class prompts and, with ``centre``, measures
    each class's mean similarity over those texts (the prior correction). ``predict`` is then
    transductive on the texts given to ``fit`` and inductive on new ones.

    Args:
        labels: the class names, in the order of ``classes_``.
        backbone: a text backbone (registered name, ``hf:PATH`` or a local directory).
        descriptions: per label, a phrase (or phrases, averaged) to embed instead of its name.
        templates: prompt templates with one ``{}``; their embeddings are averaged per class.
        centre: subtract each class's mean similarity over the fitted texts.
        temperature: softmax temperature turning similarities into probabilities (cosine
            similarities of sentence encoders differ by a few hundredths between classes).
        backbone_options: source options such as ``{"max_length": 64}``.
        batch_size: texts per forward pass.
        progress: show a progress bar while embedding.

    Example:
        >>> clf = ZeroShotClassifier(["negative", "positive"], templates=["this review is {}.", "{}"])
        >>> clf.fit(reviews).predict(reviews)
    """

    def __init__(self, labels: Sequence[str], *, backbone: str = "minilm",
                 descriptions: Mapping[str, str | Sequence[str]] | None = None,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, centre: bool = True, temperature: float = 0.05,
                 backbone_options: dict[str, Any] | None = None, batch_size: int = 32,
                 progress: bool = False) -> None:
        self.labels = labels
        self.backbone = backbone
        self.descriptions = descriptions
        self.templates = templates
        self.centre = centre
        self.temperature = temperature
        self.backbone_options = backbone_options
        self.batch_size = batch_size
        self.progress = progress

    def fit(self, X: Any, y: Any = None) -> ZeroShotClassifier:
        """Embed the class prompts and, with ``centre``, the prior of each class over texts ``X``.

        ``y`` is ignored (accepted for scikit-learn compatibility): no label is used.

        Raises:
            ConfigError: bad labels or templates (see ``class_prompts``), a non-positive
                temperature, or a backbone that does not take text.
            DataError: ``X`` is not a collection of texts.
        """
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, not {self.temperature}")
        prompts = class_prompts(self.labels, self.templates, self.descriptions)
        samples = self._texts(X)
        backbone = create_backbone(BackboneSpec(self.backbone, options=dict(self.backbone_options or {})))
        if backbone.modality != "text":
            raise ConfigError(f"zero-shot classification needs a text backbone; {self.backbone!r} takes "
                              f"{backbone.modality}")
        self.backbone_ = backbone
        self.classes_ = np.array([str(label) for label in self.labels])
        self.prompts_ = prompts
        self.class_embeddings_ = class_embeddings(backbone, prompts, batch_size=self.batch_size)
        self.score_offset_ = np.zeros(len(prompts))
        if self.centre:
            self.score_offset_ = self._similarities(samples).mean(axis=0)
        return self

    def _texts(self, X: Any) -> Samples:
        samples = X if isinstance(X, Samples) else samples_from_arrays(X, None, modality="text")
        if samples.modality != "text":
            raise DataError(f"zero-shot classification takes texts, not {samples.modality} data")
        return samples

    def _similarities(self, samples: Samples) -> np.ndarray:
        features = extract_features(self.backbone_, samples, batch_size=self.batch_size, progress=self.progress)
        return normalise_rows(features) @ self.class_embeddings_.T  # (N, C) cosine similarities

    def decision_function(self, X: Any) -> np.ndarray:
        """``(N, C)`` cosine similarities to the class prompts, minus the class priors when centred."""
        if not hasattr(self, "class_embeddings_"):
            raise NotFittedError("this ZeroShotClassifier is not fitted yet; call fit on the texts first")
        return self._similarities(self._texts(X)) - self.score_offset_

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(N, C)`` softmax of the (centred) similarities divided by ``temperature``."""
        return softmax(self.decision_function(X) / self.temperature, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The class name with the highest (centred) similarity, per text."""
        scores = self.decision_function(X)  # first, so that an unfitted model raises NotFittedError
        return self.classes_[scores.argmax(axis=1)]
