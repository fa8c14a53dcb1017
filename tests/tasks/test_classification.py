"""Classification targets: near-duplicate class names, and unseen labels refused alike by score and evaluate."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import support
from transferkit import TransferClassifier
from transferkit.errors import DataError
from transferkit.tasks.classification import Classification


def test_classes_differing_only_in_case_or_spaces_are_named_in_a_warning() -> None:
    with pytest.warns(UserWarning, match="classes 'POS' and 'pos' differ only in case"):
        task = Classification().fit_targets(["POS", "pos", "neg", "neg"])
    assert task.names == ["POS", "neg", "pos"]  # still three classes: the warning does not guess
    with pytest.warns(UserWarning, match="'neg' and 'neg ' differ"):
        Classification().fit_targets(["neg", "neg ", "pos"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Classification().fit_targets(["negative", "neg", "pos"])


def test_score_refuses_unseen_labels_as_evaluate_does(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(6, seed=0)
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False).fit(texts, labels)
    unseen = ["zzz"] + labels[1:]
    with pytest.raises(DataError, match=r"\['zzz'\] were not seen in training"):
        clf.evaluate(texts, unseen)
    with pytest.raises(DataError, match=r"\['zzz'\] were not seen in training"):
        clf.score(texts, unseen)
    assert clf.score(texts, labels) == clf.evaluate(texts, labels)["accuracy"]
