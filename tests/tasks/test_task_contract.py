"""The Task contract, checked the same way for every registered task."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.errors import ConfigError, DataError
from transferkit.tasks import TASKS, Task, make_task, task_from_manifest, task_manifest
from transferkit.tasks.base import infer_task


@dataclass(frozen=True)
class Example:
    """Training labels of a task, a label its encoding cannot take, and the head outputs that predict
    given labels perfectly (the inverse of ``decode``).

    A task whose head reads tokens also says how its labels look to the head and to the probe: ``head_data``
    gives the perfect head outputs and the targets of a batch, ``rows`` the perfect outputs and targets
    of the probe's rows (one per word), ``regroup`` turns the probe's row outputs back into ``decode``'s input.
    """

    labels: list[str]
    bad_label: str | None  # None: an open-set task, whose unseen labels encode as -1 (an identity not enrolled)
    perfect: Callable[[Task, list[str]], np.ndarray]
    head_data: Callable[[Task, list[str]], tuple[np.ndarray, np.ndarray]] | None = None
    rows: Callable[[Task, list[str]], tuple[np.ndarray, np.ndarray]] | None = None
    regroup: Callable[[Task, list[str], np.ndarray], np.ndarray] | None = None

    def batch(self, task: Task, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(perfect head outputs, targets)`` as the loop sees them."""
        perfect, targets = (self.head_data or (lambda t, y: (self.perfect(t, y), t.encode(y))))(task, labels)
        return torch.from_numpy(np.asarray(perfect, np.float32)), torch.from_numpy(np.asarray(targets))

    def probe_rows(self, task: Task, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return (self.rows or (lambda t, y: (self.perfect(t, y), t.encode(y))))(task, labels)

    def outputs(self, task: Task, labels: list[str], rows: np.ndarray) -> np.ndarray:
        return rows if self.regroup is None else self.regroup(task, labels, rows)


def _logits_for(task: Task, labels: list[str]) -> np.ndarray:
    return np.eye(len(task.names), dtype=np.float32)[task.encode(labels)] * 20 - 10


def _sigmoid_logits_for(task: Task, labels: list[str]) -> np.ndarray:
    return task.encode(labels) * 20 - 10


def _standardised_for(task: Task, labels: list[str]) -> np.ndarray:
    return task.encode(labels)[:, None]


def _cosines_for(task: Task, labels: list[str]) -> np.ndarray:
    return np.eye(len(task.names), dtype=np.float32)[task.encode(labels)] * 2 - 1


def _word_rows(task: Task, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    targets = np.concatenate(list(task.encode(labels)))
    return np.eye(len(task.names), dtype=np.float32)[targets] * 20 - 10, targets


def _word_scores(task: Task, labels: list[str], rows: np.ndarray) -> np.ndarray:
    from transferkit.data.tagged import Sentence
    from transferkit.tasks.ner import WordScores

    out, start = np.empty(len(labels), dtype=object), 0
    for i, label in enumerate(labels):
        words = len(label.split())
        out[i] = WordScores(Sentence.from_words([f"w{j}" for j in range(words)]), rows[start:start + words])
        start += words
    return out


def _word_logits(task: Task, labels: list[str]) -> np.ndarray:
    return _word_scores(task, labels, _word_rows(task, labels)[0])


def _token_batch(task: Task, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one leading special token, the words, then padding: ignored targets off the words."""
    from transferkit.tasks.base import IGNORE_INDEX

    encoded = task.encode(labels)
    length = 2 + max(len(e) for e in encoded)
    targets = np.full((len(labels), length), IGNORE_INDEX, dtype=np.int64)
    for i, tags in enumerate(encoded):
        targets[i, 1:1 + len(tags)] = tags
    perfect = np.eye(len(task.names), dtype=np.float32)[np.maximum(targets, 0)] * 20 - 10
    return perfect, targets


def _boxes(label: str, *, cls: str = "tree") -> str:
    return json.dumps([[x, 2, x + 6, 9, cls] for x in range(0, 8 * len(label), 8)])


def _detections(task: Task, labels: list[str]) -> np.ndarray:
    """Each image's true boxes found with score 1 (class indices from 1, as the detector gives them)."""
    out = np.empty(len(labels), dtype=object)
    for i, encoded in enumerate(task.encode(labels)):
        out[i] = {"boxes": np.asarray(encoded["boxes"], np.float32).reshape(-1, 4),
                  "scores": np.ones(len(encoded["labels"]), np.float32), "labels": np.asarray(encoded["labels"])}
    return out


EXAMPLES = {
    "classification": Example(["cat", "dog", "bird", "dog", "cat", "bird"], "fish", _logits_for),
    "ner": Example(["B-PER O", "O B-LOC I-LOC", "B-PER I-PER O", "O", "B-LOC", "O O B-PER"], "O fish",
                   _word_logits, head_data=_token_batch, rows=_word_rows, regroup=_word_scores),
    "multilabel": Example(["a|b", "b", "c", "a|c", "a", "b|c"], "a|z", _sigmoid_logits_for),
    "regression": Example(["1", "2.5", "4", "5", "3", "2"], "lots", _standardised_for),
    # before enrolment a verification head's scores are its cosines with the identity proxies
    "verification": Example(["ann", "bob", "cy", "bob", "ann", "cy"], None, _cosines_for),
    # heads on feature maps (detectors) need a backbone: tests/tasks/test_detection.py trains them
    "detection": Example([_boxes("ab"), _boxes("abc", cls="dead"), _boxes("a"), "[]"], _boxes("a", cls="fish"),
                         _detections),
}


# Tasks whose head is the backbone's own output layer (generation: the next-token head): no head to fit, no probe, no
# class list, no unknown label. Their contract (manifest, loss, score, records, bad input) is checked in their file.
BACKBONE_HEAD_TASKS = {"generation": "test_generation.py"}


def test_every_task_without_a_head_of_its_own_has_its_own_contract_tests() -> None:
    here = Path(__file__).parent
    for task, tests in BACKBONE_HEAD_TASKS.items():
        assert task in TASKS.names() and (here / tests).is_file()
        assert make_task(task).fit_targets(["an answer"]).build_head(8).state_dict() == {}


@pytest.fixture(params=[task for task in TASKS.names() if task not in BACKBONE_HEAD_TASKS])
def name(request: pytest.FixtureRequest) -> str:
    if request.param not in EXAMPLES:
        pytest.fail(f"task {request.param!r} is registered but has no Example in {__file__}")
    return request.param


@pytest.fixture(params=[n for n in TASKS.names() if TASKS.get(n).output != "feature_maps"
                        and n not in BACKBONE_HEAD_TASKS])
def head_name(request: pytest.FixtureRequest) -> str:
    """A task whose head sits on pooled or token features (built from a feature size, fitted as a probe)."""
    return request.param


def fitted(name: str) -> Task:
    return make_task(name).fit_targets(EXAMPLES[name].labels)


def test_every_task_declares_what_it_reads_and_scores(name: str) -> None:
    entry = TASKS.get(name)
    assert entry.output in ("pooled", "tokens", "feature_maps") and entry.description
    task = make_task(name)
    assert task.name == name and isinstance(task.score_name, str)
    assert not task.fitted


def test_encoding_survives_the_manifest_and_decodes_back(name: str) -> None:
    example, task = EXAMPLES[name], fitted(name)
    manifest = json.loads(json.dumps({"task": task_manifest(task)}))
    restored = task_from_manifest(manifest)
    assert type(restored) is type(task) and restored.names == task.names
    # compared per sample: a per-word task encodes each sentence as an array of its own length
    assert [np.asarray(t).tolist() for t in restored.encode(example.labels)] == \
        [np.asarray(t).tolist() for t in task.encode(example.labels)]
    # outputs that mean exactly the labels decode into predictions equal to them
    scores = restored.decode(example.perfect(task, example.labels))
    predictions = restored.predictions(scores)
    assert len(predictions) == len(example.labels)
    metrics = restored.metrics(example.labels, scores)
    assert metrics["n"] == len(example.labels)
    assert metrics[task.score_name] == pytest.approx(1.0)
    json.dumps(metrics)
    assert isinstance(restored.format_metrics(metrics), str)


def test_an_unknown_label_is_a_data_error_naming_it(name: str) -> None:
    example = EXAMPLES[name]
    if example.bad_label is None:  # open set: a label never seen is "not enrolled", not a mistake
        assert fitted(name).encode(["nobody", example.labels[0]]).tolist() == [-1, 0]
        return
    with pytest.raises(DataError, match="z|lots|fish"):
        fitted(name).encode([example.bad_label], source="data.csv")


def test_an_unknown_label_names_its_origin(name: str) -> None:
    example = EXAMPLES[name]
    if example.bad_label is None:
        pytest.skip(f"{name} is open-set: every label encodes (checked above)")
    labels = [example.labels[0], example.bad_label]
    with pytest.raises(DataError, match=r"val\.csv row 3") as raised:
        fitted(name).encode(labels, source="validation data", origins=["val.csv row 2", "val.csv row 3"])
    assert "\n" not in str(raised.value)


def test_a_bad_training_label_names_its_origin() -> None:
    with pytest.raises(DataError, match=r"data\.csv row 4.*'nan'"):
        make_task("regression").fit_targets(["1", "2", "nan"], origins=[f"data.csv row {n}" for n in (2, 3, 4)])
    with pytest.raises(DataError, match=r"tags\.conll line 1 to tags\.conll line 5"):
        make_task("ner").fit_targets(["O O", "O"], origins=["tags.conll line 1", "tags.conll line 5"])


def test_head_outputs_one_value_per_name(head_name: str) -> None:
    name = head_name
    task = fitted(name)
    head = task.build_head(8)
    assert head(torch.randn(5, 8)).shape == (5, task.num_outputs())
    assert head(torch.randn(5, 7, 8)).shape == (5, 7, task.num_outputs())  # per token, for a token head


def test_loss_is_finite_and_training_the_head_lowers_it(head_name: str) -> None:
    from transferkit.tasks.base import IGNORE_INDEX

    name = head_name
    example, task = EXAMPLES[name], fitted(name)
    torch.manual_seed(0)
    perfect, targets = example.batch(task, example.labels)
    features = torch.randn(*perfect.shape[:-1], 8)  # (N, 8), or (N, T, 8) for a token head
    # the mean is over samples, or over the tokens that carry a target
    count = int((targets != IGNORE_INDEX).sum()) if task.output == "tokens" else len(example.labels)
    head = task.build_head(8)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = task.loss(head(features), targets)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    summed = task.loss(head(features), targets, reduction="sum")
    mean = task.loss(head(features), targets)
    assert float(summed.detach()) == pytest.approx(count * float(mean.detach()), rel=1e-4)
    assert task.score(perfect, targets) >= task.score(head(features).detach() * 0, targets)
    assert task.score(perfect, targets) == pytest.approx(1.0)


def test_linear_probe_recovers_a_linear_relation(head_name: str) -> None:
    name = head_name
    if name == "verification":
        pytest.skip("verification's probe is the embedding projection (D, D), not per-identity outputs: "
                    "tests/tasks/test_verification.py checks it")
    example, task = EXAMPLES[name], fitted(name)
    labels = example.labels * 10
    rng = np.random.default_rng(0)
    outputs, targets = example.probe_rows(task, labels)
    features = np.hstack([outputs, rng.standard_normal((len(outputs), 3))]).astype(np.float32)
    probe = task.fit_probe(features, targets, c=None, seed=0)
    assert probe.weight.shape == (task.num_outputs(), features.shape[1]) and probe.bias.shape == (task.num_outputs(),)
    json.dumps(probe.info)
    scores = task.decode(example.outputs(task, labels, features @ probe.weight.T + probe.bias))
    assert task.metrics(labels, scores)[task.score_name] > 0.9


def test_a_record_is_json_and_a_table_row_of_strings(name: str) -> None:
    example, task = EXAMPLES[name], fitted(name)
    scores = task.decode(example.perfect(task, example.labels))
    record = task.record(scores[0], top_k=2)
    json.dumps(record)
    row = task.table_row(record)
    assert row and all(isinstance(cell, str) for cell in row)


def test_labels_that_cannot_train_the_task_are_a_data_error(name: str) -> None:
    with pytest.raises(DataError):
        make_task(name).fit_targets(["1"])


def test_an_unknown_task_lists_the_known_ones() -> None:
    known = "classification, detection, generation, multilabel, ner, regression"
    with pytest.raises(ConfigError, match=f"unknown task 'pose'.*{known}"):
        make_task("pose")


def test_a_manifest_without_a_task_is_classification() -> None:
    task = task_from_manifest({"classes": ["neg", "pos"]})
    assert task.name == "classification" and task.names == ["neg", "pos"]


@pytest.mark.parametrize(("labels", "repeated", "expected"), [
    (["pos", "neg"], False, "classification"),
    (["a|b", "a"], False, "multilabel"),
    (["cat", "dog"], True, "multilabel"),
])
def test_the_task_is_inferred_from_the_labels(labels: list[str], repeated: bool, expected: str) -> None:
    assert infer_task(labels, "data.csv", repeated_files=repeated) == expected


def test_numeric_labels_are_not_guessed() -> None:
    with pytest.raises(ConfigError, match=r"labels of data.csv are all numbers \(0, 1, 2\).*--task regression"):
        infer_task(["1", "0", "2", "1"], "data.csv")
