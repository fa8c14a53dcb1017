"""Zero-shot text classification: prompts, centring, the estimator, and real MiniLM on obvious sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from transferkit.errors import ConfigError, DataError, NotFittedError
from transferkit.unsupervised.zero_shot import ZeroShotClassifier, class_prompts


def test_prompts_fill_every_template_with_each_description() -> None:
    prompts = class_prompts(["neg", "pos"], ["{}", "this review is {}."],
                            {"pos": ["positive", "great"]})
    assert prompts[0] == ["neg", "this review is neg."]
    assert prompts[1] == ["positive", "great", "this review is positive.", "this review is great."]


@pytest.mark.parametrize(("labels", "templates", "descriptions", "message"), [
    (["only"], ["{}"], None, "at least two"),
    (["a", "a", "b"], ["{}"], None, "duplicate"),
    (["a", "b"], ["no slot"], None, "exactly once"),
    (["a", "b"], [], None, "no prompt template"),
    (["a", "b"], ["{}"], {"c": "x"}, "unknown labels"),
])
def test_bad_prompts_are_config_errors(labels, templates, descriptions, message) -> None:
    with pytest.raises(ConfigError, match=message):
        class_prompts(labels, templates, descriptions)


def test_texts_equal_to_a_class_prompt_go_to_that_class(tiny_bert_dir: Path) -> None:
    # identical strings embed identically whatever the weights: cosine 1 beats every other class
    texts = ["good film", "awful plot", "boring movie", "good film", "awful plot"]
    clf = ZeroShotClassifier(["good film", "awful plot", "boring movie"], backbone=f"hf:{tiny_bert_dir}",
                             templates=["{}"], centre=False).fit(texts)
    assert clf.predict(texts).tolist() == texts
    probs = clf.predict_proba(texts)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(axis=1), 1.0)


def test_centring_removes_each_class_mean_over_the_fitted_texts(tiny_bert_dir: Path) -> None:
    texts = ["good film", "the plot was awful", "very boring acting", "a lovely movie", "sad plot"]
    raw = ZeroShotClassifier(["good", "bad"], backbone=f"hf:{tiny_bert_dir}", centre=False).fit(texts)
    centred = clone(raw).set_params(centre=True).fit(texts)
    scores = centred.decision_function(texts)
    assert np.allclose(scores.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(scores, raw.decision_function(texts) - raw.decision_function(texts).mean(axis=0))


def test_estimator_rules_and_user_errors(tiny_bert_dir: Path) -> None:
    clf = ZeroShotClassifier(["good", "bad"], backbone=f"hf:{tiny_bert_dir}")
    with pytest.raises(NotFittedError):
        clf.predict(["good film"])
    with pytest.raises(ConfigError, match="temperature"):
        clone(clf).set_params(temperature=0).fit(["good film"])
    with pytest.raises(DataError, match="image items"):
        clf.fit(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="needs a text backbone"):
        ZeroShotClassifier(["a", "b"], backbone="efficientnet_lite0").fit(["good film"])


REVIEWS = [
    ("What a wonderful, moving film; I loved every minute.", "positive"),
    ("A brilliant cast and a delightful story.", "positive"),
    ("One of the best movies I have seen this year.", "positive"),
    ("Charming, funny and beautifully made.", "positive"),
    ("A dull, tedious mess that I hated.", "negative"),
    ("The worst film of the year, boring and stupid.", "negative"),
    ("Awful acting and a terrible script.", "negative"),
    ("I was bored and wanted my money back.", "negative"),
]


@pytest.mark.integration
def test_minilm_zero_shot_gets_obvious_reviews_right() -> None:
    texts, truth = zip(*REVIEWS, strict=True)
    clf = ZeroShotClassifier(["negative", "positive"], templates=["this review is {}.", "{}"]).fit(list(texts))
    accuracy = float(np.mean(clf.predict(list(texts)) == np.array(truth)))
    assert accuracy >= 7 / 8  # chance is 1/2
