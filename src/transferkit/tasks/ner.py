"""Named-entity recognition: a BIO or BIOES tag per word, a linear head on every token, entity-level F1.

A sample is a sentence (``data.tagged.Sentence``: a text and its words' character spans) and its
label the words' tags separated by spaces. The head reads the backbone's token features; each
word is trained and predicted at its first sub-token (``tasks.tokens``), sentences longer than the
backbone's window are split into overlapping windows. Predictions are entities with their
character spans in the text; metrics are seqeval's entity-level precision, recall and F1, micro
and per type, next to token accuracy.

Example:
    >>> est = TransferEstimator("minilm", "finetune", task="ner").fit(sentences, tags)  # doctest: +SKIP
    >>> est.predict(["Obama visited Paris"])  # doctest: +SKIP
    [[{'text': 'Obama', 'start': 0, 'end': 5, 'label': 'PER', 'score': 0.97}, ...]]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.data.tagged import (
    JSONL_EXTENSIONS,
    TAGGED_EXTENSIONS,
    Sentence,
    as_sentence,
    check_tags,
    join_tags,
    read_tagged,
    split_tags,
)
from transferkit.errors import DataError
from transferkit.tasks.base import IGNORE_INDEX, TASKS, ProbeFit, Task, fold_scaling, label_place, standardised_features

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.heads import TransferModel

class UnseenEntityWarning(UserWarning):
    """Evaluation or validation data holds entity types the training data had none of."""


# the probe's inverse L2 strengths tried on a held-out fifth of the words when none is given
PROBE_CS = (0.05, 0.5)
OUTSIDE = "O"


@dataclass(frozen=True)
class WordScores:
    """One sentence and a row per word: the head's logits (``predict_outputs``) or tag probabilities
    (``decode``), ``(W, K)`` in the order of the task's tags."""

    sentence: Sentence
    values: np.ndarray


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@TASKS.register("ner", description="named entities: a BIO/BIOES tag per word on token features (first sub-token), "
                "entity-level F1 (seqeval)")
class NamedEntities(Task):
    """Targets are, per sentence, the indices of its words' tags in the sorted tags seen in training."""

    output = "tokens"
    score_name = "f1"
    file_extensions = TAGGED_EXTENSIONS
    # a frozen encoder's token features miss most entities (WNUT-16: probe 32.6 F1, fine-tuning 36.7 with
    # batches of 32); batches of 8 give four times the steps in the same time, and the validation split's
    # best epoch was the third of five, so four (benchmarks/RESULTS.md, "Named entities")
    default_fit = MappingProxyType({"strategy": "finetune", "batch_size": 8, "epochs": 4})

    def __init__(self, tags: Sequence[str] | None = None) -> None:
        self.tags: list[str] = list(tags or [])

    # -- inputs -----------------------------------------------------------------------------------
    def read_data(self, path: Path) -> Samples:
        """Sentences and tags from a CoNLL/BIO file or JSONL (``data.tagged.read_tagged``).

        Raises:
            DataError: another kind of file, or a malformed line or tag (naming the line).
        """
        if Path(path).suffix.lower() not in TAGGED_EXTENSIONS | JSONL_EXTENSIONS:
            raise DataError(f"{path}: the ner task reads {', '.join(sorted(TAGGED_EXTENSIONS | JSONL_EXTENSIONS))} "
                            "files of tagged words")
        return read_tagged(path)

    def samples(self, X: Any, y: Any = None, *, modality: str | None = None) -> Samples:
        """Texts (split into words) or lists of words, with one list of tags (or ``"B-PER O"``) each.

        Raises:
            DataError: a sentence whose number of tags is not its number of words, or a malformed tag.
        """
        from transferkit.data import Samples

        if isinstance(X, str | Sentence):
            X = [X]
        items = [as_sentence(x) for x in X]
        origins = [f"X[{i}]" for i in range(len(items))]
        labels = None
        if y is not None:
            labels = [value if isinstance(value, str) else join_tags([str(t) for t in value]) for value in y]
            if len(labels) != len(items):
                raise DataError(f"{len(items)} sentences but {len(labels)} tag lists")
            for origin, sentence, label in zip(origins, items, labels, strict=True):
                tags = split_tags(label)
                if len(tags) != len(sentence.spans):
                    raise DataError(f"{origin}: {len(sentence.spans)} words but {len(tags)} tags")
                check_tags(tags, [f"{origin} word {i + 1}" for i in range(len(tags))])
        return Samples(items=items, labels=labels, modality="text", origins=origins)

    @staticmethod
    def _words(samples: Samples) -> list[list[str]]:
        return [as_sentence(item).words for item in samples.items]

    def make_loader(self, samples: Samples, backbone: Backbone, targets: Sequence[Any] | None, *, train: bool,
                    batch_size: int, seed: int = 0) -> DataLoader:
        from transferkit.tasks.tokens import window_loader, word_windows

        windows = word_windows(backbone, self._words(samples))
        token_targets = None if targets is None else windows.targets(targets)
        return window_loader(windows, token_targets, train=train, batch_size=batch_size, seed=seed)

    def probe_data(self, backbone: Backbone, samples: Samples, targets: Sequence[Any], *, batch_size: int,
                   use_cache: bool, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """Frozen features of every word's first sub-token ``(M, D)`` and the word's tag ``(M,)``."""
        from transferkit.tasks.tokens import first_token_features, word_windows

        words = self._words(samples)
        windows = word_windows(backbone, words)
        features = first_token_features(backbone, words, windows, batch_size=batch_size, use_cache=use_cache)
        return features, windows.targets(targets)[windows.labelled].numpy()

    def predict_outputs(self, model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                        progress: bool = False) -> np.ndarray:
        """Per sentence a ``WordScores`` of logits ``(W, K)``."""
        from transferkit.tasks.tokens import word_logits, word_windows

        self.check_fitted()
        sentences = [as_sentence(item) for item in samples.items]
        worded = [i for i, s in enumerate(sentences) if s.spans]
        logits: list[np.ndarray] = [np.zeros((0, len(self.tags)), np.float32)] * len(sentences)
        if worded:
            windows = word_windows(model.backbone, [sentences[i].words for i in worded])
            found = word_logits(model, windows, [len(sentences[i].spans) for i in worded], num_classes=len(self.tags),
                                batch_size=batch_size, fallback=self.tags.index(OUTSIDE))
            for i, values in zip(worded, found, strict=True):
                logits[i] = values
        return _objects([WordScores(s, v) for s, v in zip(sentences, logits, strict=True)])

    # -- targets ----------------------------------------------------------------------------------
    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> NamedEntities:
        """Every tag of each entity type seen (``B-``/``I-``, and ``E-``/``S-`` for BIOES data), and ``O``.

        Raises:
            DataError: a malformed tag sequence, or no entity at all.
        """
        tags = set()
        for index, label in enumerate(labels):
            found = split_tags(label)
            where = origins[index] if origins is not None else f"sentence {index + 1}"
            check_tags(found, [f"{where} word {i + 1}" for i in range(len(found))])
            tags.update(found)
        kinds = {tag.partition("-")[2] for tag in tags - {OUTSIDE}}
        if not kinds:
            where = f" ({origins[0]} to {origins[-1]})" if origins else ""
            raise DataError(f"no entity tags in the training data{where}: every word is 'O'; need at least one entity")
        prefixes = "BIES" if any(tag[:2] in ("E-", "S-") for tag in tags) else "BI"
        self.tags = sorted({f"{prefix}-{kind}" for kind in kinds for prefix in prefixes} | {OUTSIDE})
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        """Tag indices per sentence; the tags of an entity type never seen in training become ``O`` (the
        model cannot predict them; metrics, which read the labels, count them as missed), with a warning.

        Raises:
            DataError: a malformed tag sequence (naming the sentence and word).
        """
        self.check_fitted()
        index = {tag: i for i, tag in enumerate(self.tags)}
        unseen = set()
        encoded = []
        for number, label in enumerate(labels):
            tags = split_tags(label)
            where = label_place(source, origins, number) if origins is not None else f"{source} sentence {number + 1}"
            check_tags(tags, [f"{where} word {i + 1}" for i in range(len(tags))])
            unseen.update(t.partition("-")[2] for t in tags if t not in index)
            encoded.append(np.array([index.get(t, index[OUTSIDE]) for t in tags], dtype=np.int64))
        if unseen:
            warnings.warn(f"{source}: entity types {sorted(unseen)} were not seen in training; the model cannot "
                          "predict them (they count as missed)", UnseenEntityWarning, stacklevel=2)
        return _objects(encoded)

    @property
    def names(self) -> list[str]:
        return list(self.tags)

    def state(self) -> dict[str, Any]:
        return {"tags": list(self.tags)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.tags = [str(t) for t in state["tags"]]

    # -- model ------------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy over the tokens that carry a target ``(B, T, K), (B, T)``; the mean is over them."""
        total = F.cross_entropy(outputs.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                                reduction="sum")
        if reduction == "sum":
            return total
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)  # a window without targets: loss 0, not NaN

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Entity-level micro F1 over windows ``(N, T, K)``, ``(N, T)``."""
        from seqeval.metrics import f1_score

        predicted = outputs.argmax(-1)
        y_true, y_pred = [], []
        for row in range(len(targets)):
            kept = targets[row] != IGNORE_INDEX
            y_true.append([self.tags[i] for i in targets[row][kept].tolist()])
            y_pred.append([self.tags[i] for i in predicted[row][kept].tolist()])
        return float(f1_score(y_true, y_pred, zero_division=0))

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        """A multinomial logistic regression on standardised word features; without ``c``, the C of
        ``PROBE_CS`` with the lowest log-loss on a held-out fifth of the words."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        scaled, mean, scale = standardised_features(features)
        targets = np.asarray(targets, dtype=np.int64)
        chosen, losses = c, {}
        if chosen is None:
            held = np.random.default_rng(seed).random(len(targets)) < 0.2
            for value in PROBE_CS:
                trial = LogisticRegression(C=value, max_iter=300, random_state=seed).fit(scaled[~held], targets[~held])
                losses[value] = float(log_loss(targets[held], trial.predict_proba(scaled[held]), labels=trial.classes_))
            chosen = min(losses, key=losses.__getitem__)
        probe = LogisticRegression(C=chosen, max_iter=500, random_state=seed).fit(scaled, targets)
        coef, intercept = probe.coef_, probe.intercept_
        if len(probe.classes_) == 2:  # sklearn keeps one row for two classes
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        # tags absent from the probe's words are never predicted
        full_coef = np.zeros((len(self.tags), features.shape[1]))
        full_intercept = np.full(len(self.tags), -30.0)
        full_coef[probe.classes_], full_intercept[probe.classes_] = coef, intercept
        return fold_scaling(full_coef, full_intercept, mean, scale, {"probe_c": chosen, "probe_words": len(targets)})

    # -- predictions ------------------------------------------------------------------------------
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return _objects([WordScores(o.sentence, torch.softmax(torch.from_numpy(np.asarray(o.values, np.float32)),
                                                              dim=-1).numpy()) for o in outputs])

    def tags_of(self, scores: WordScores) -> list[str]:
        return [self.tags[i] for i in scores.values.argmax(axis=1)] if len(scores.values) else []

    def entities(self, scores: WordScores) -> list[dict[str, Any]]:
        """The predicted entities of one sentence, in order: ``{text, start, end, label, score}``.

        ``start``/``end`` are character offsets into the sentence's text and ``text`` is ``text[start:end]``
        (the entity's words and what lies between them). ``score`` is the model's confidence in the entity:
        the mean, over the entity's words, of the probability of the tag predicted for the word (each word is
        predicted at its first sub-token), rounded to 4 decimals.
        """
        from seqeval.metrics.sequence_labeling import get_entities

        sentence, found = scores.sentence, []
        best = scores.values.max(axis=1) if len(scores.values) else np.zeros(0)
        for label, first, last in get_entities(self.tags_of(scores)):
            start, end = sentence.spans[first][0], sentence.spans[last][1]
            found.append({"text": sentence.text[start:end], "start": int(start), "end": int(end), "label": label,
                          "score": round(float(best[first:last + 1].mean()), 4)})
        return found

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        return _objects([self.entities(s) for s in scores])

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        from seqeval.metrics import accuracy_score, classification_report

        y_true = [split_tags(label) for label in labels]
        y_pred = [self.tags_of(s) for s in scores]
        for index, (true, pred) in enumerate(zip(y_true, y_pred, strict=True)):
            if len(true) != len(pred):
                raise DataError(f"sentence {index + 1} has {len(true)} tags but {len(pred)} words")
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
        per_type = {kind: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                           "f1": float(row["f1-score"]), "support": int(row["support"])}
                    for kind, row in report.items() if not kind.endswith(" avg")}
        return {"n": len(labels), "f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
                "recall": float(micro["recall"]), "entities": int(micro["support"]),
                "macro_f1": float(report.get("macro avg", {}).get("f1-score", 0.0)),
                "token_accuracy": float(accuracy_score(y_true, y_pred)), "per_type": per_type}

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        lines = [f"entity F1 {metrics['f1']:.3f} (precision {metrics['precision']:.3f}, recall "
                 f"{metrics['recall']:.3f}) on {metrics['entities']} entities in {metrics['n']} sentences; "
                 f"token accuracy {metrics['token_accuracy']:.3f}"]
        lines += [f"  {kind:<16} F1 {row['f1']:.3f}  P {row['precision']:.3f}  R {row['recall']:.3f}  "
                  f"n {row['support']}" for kind, row in sorted(metrics["per_type"].items())]
        return "\n".join(lines)

    def record(self, scores: WordScores, *, top_k: int = 3) -> dict[str, Any]:
        return {"entities": self.entities(scores)}

    def json_line(self, origin: str, record: dict[str, Any]) -> Any:
        """The input's entities alone, a JSON list of ``{text, start, end, label, score}`` (``entities``); the
        line's place among the lines says which input it is, as the lines follow the inputs' order."""
        return record["entities"]

    def table_row(self, record: dict[str, Any]) -> list[str]:
        shown = [f"{e['text']} [{e['start']}:{e['end']}] {e['label']} {e['score']:.2f}" for e in record["entities"]]
        return ["; ".join(shown) or "(no entities)"]
