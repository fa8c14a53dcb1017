"""classification_metrics on a small example worked out by hand."""

from __future__ import annotations

import json

import pytest

from transferkit.evaluate import classification_metrics, format_metrics

# true a a a b b c, predicted a a b b c c: right at 0, 1, 3 and 5
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]


def test_values_match_a_hand_computation() -> None:
    metrics = classification_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # a: P 2/2 R 2/3 F1 0.8; b: P 1/2 R 1/2 F1 0.5; c: P 1/2 R 1/1 F1 2/3
    per_class = metrics["per_class"]
    assert per_class["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert per_class["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_confusion_matrix_rows_are_true_classes_in_the_given_order() -> None:
    metrics = classification_metrics(Y_TRUE, Y_PRED, ["c", "a", "b"])
    assert metrics["confusion_matrix"]["labels"] == ["c", "a", "b"]
    assert list(metrics["per_class"]) == ["c", "a", "b"]
    # row = true class, column = predicted class
    assert metrics["confusion_matrix"]["matrix"] == [
        [1, 0, 0],  # true c: predicted c
        [0, 2, 1],  # true a: twice a, once b
        [1, 0, 1],  # true b: once c, once b
    ]


def test_a_class_absent_from_the_data_keeps_a_zero_row_but_is_left_out_of_macro_f1() -> None:
    metrics = classification_metrics(["a", "b"], ["a", "b"], ["a", "b", "z"])
    assert metrics["accuracy"] == 1.0
    assert metrics["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["confusion_matrix"]["matrix"][2] == [0, 0, 0]
    assert metrics["macro_f1"] == pytest.approx(1.0)
    assert metrics["absent_classes"] == ["z"]
    assert "absent from the data, left out of macro-F1: z" in format_metrics(metrics)


def test_wrong_predictions_into_an_absent_class_still_lower_macro_f1() -> None:
    metrics = classification_metrics(["a", "b"], ["a", "z"], ["a", "b", "z"])
    # a: F1 1; b: recall 0, F1 0; z is absent from the truth and not averaged
    assert metrics["macro_f1"] == pytest.approx(0.5)
    assert metrics["absent_classes"] == ["z"]


def test_metrics_are_json_serialisable_and_formatted() -> None:
    metrics = classification_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert json.loads(json.dumps(metrics)) == metrics
    text = format_metrics(metrics)
    assert "accuracy 0.6667" in text and "n=6" in text and "absent" not in text
    assert metrics["absent_classes"] == []
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["a", "b", "c"]
