"""Named entities end to end: sub-word alignment, long sentences in overlapping windows, fit / evaluate /
predict / save / load with the probe and fine-tuning, and the CLI on CoNLL files and raw text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import support
import transferkit
from support import assert_user_error, invoke
from transferkit import TransferEstimator
from transferkit.backbones import create_backbone
from transferkit.errors import DataError
from transferkit.tasks import make_task
from transferkit.tasks.base import IGNORE_INDEX
from transferkit.tasks.tokens import word_windows


@pytest.fixture(scope="module")
def backbone(tiny_bert_dir: Path):
    return create_backbone(f"hf:{tiny_bert_dir}")


def test_the_first_sub_token_carries_the_word_label(backbone) -> None:
    # "goodfilm" is not in the word vocabulary: the tokenizer splits it into "good" + "##..." pieces or [UNK]
    sentences = [["very", "good", "film"], ["bad", "acting"]]
    windows = word_windows(backbone, sentences)
    targets = windows.targets([np.array([1, 2, 0]), np.array([3, 0])])
    for row, words in enumerate(sentences):
        labelled = windows.word_ids[row][windows.labelled[row]].tolist()
        assert labelled == list(range(len(words)))  # each word once, in order
    assert targets[0][windows.labelled[0]].tolist() == [1, 2, 0]
    assert (targets[~windows.labelled] == IGNORE_INDEX).all()  # [CLS], [SEP], padding


def test_later_sub_tokens_are_ignored(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    # a word-piece vocabulary: "goodfilm" -> "good", "##film"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "##film", "film", "the"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    net = create_backbone(f"hf:{tiny_bert_dir}")
    net.tokenizer = tokenizer
    windows = word_windows(net, [["the", "goodfilm", "film"]])
    assert windows.word_ids[0].tolist()[:6] == [-1, 0, 1, 1, 2, -1]
    assert windows.labelled[0].tolist()[:6] == [False, True, True, False, True, False]
    assert windows.targets([np.array([0, 5, 6])])[0].tolist()[:6] == [IGNORE_INDEX, 0, 5, IGNORE_INDEX, 6,
                                                                      IGNORE_INDEX]


def test_a_long_sentence_is_split_into_overlapping_windows_and_every_word_labelled(tiny_bert_dir: Path) -> None:
    net = create_backbone(f"hf:{tiny_bert_dir}", max_length=10)
    words = [support.WORDS[i % len(support.WORDS)] for i in range(30)]
    windows = word_windows(net, [words, ["good"]])
    assert windows.sentence_ids.tolist().count(0) > 3 and windows.batch["input_ids"].shape[1] <= 10
    labelled = windows.word_ids[windows.labelled & (windows.sentence_ids == 0)[:, None]].tolist()
    assert sorted(set(labelled)) == list(range(30))  # none lost to truncation
    # a continuation window never labels its first word (it may be cut; the previous window has it)
    for row in range(1, len(windows)):
        if windows.sentence_ids[row] == windows.sentence_ids[row - 1]:
            first = windows.word_ids[row][windows.word_ids[row] >= 0][0]
            assert not windows.labelled[row][windows.word_ids[row] == first].any()


def _tagged(n: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    return support.tagged_sentences(n, seed=seed)


@pytest.fixture(scope="module", params=["linear_probe", "finetune"])
def fitted(request: pytest.FixtureRequest, tiny_bert_dir: Path) -> TransferEstimator:
    x, y = _tagged(80, seed=0)
    settings = {} if request.param == "linear_probe" else {"epochs": 6, "batch_size": 8, "lr": 2e-3}
    return TransferEstimator(backbone=f"hf:{tiny_bert_dir}", strategy=request.param, task="ner", progress=False,
                             **settings).fit(x, y)


def test_the_model_learns_the_tagging(fitted: TransferEstimator) -> None:
    x, y = _tagged(30, seed=1)
    metrics = fitted.evaluate(x, y)
    assert metrics["f1"] > 0.8 and metrics["token_accuracy"] > 0.85
    assert {"POS", "NEG"} <= metrics["per_type"].keys() and metrics["n"] == 30
    assert fitted.score(x, y) == pytest.approx(metrics["f1"])
    if fitted.strategy == "finetune":
        losses = [row["train_loss"] for row in fitted.history_]
        assert losses[-1] < 0.5 * losses[0]
    json.dumps(metrics)


def test_predictions_are_entities_with_character_spans(fitted: TransferEstimator) -> None:
    text = "the film was good  acting awful"
    (entities,) = fitted.predict([text])
    assert {(e["text"], e["label"]) for e in entities} == {("good", "POS"), ("awful", "NEG")}
    for entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["text"] and 0 < entity["score"] <= 1
    (from_words,) = fitted.predict([["bad", "plot"]])
    assert from_words == [{"text": "bad", "start": 0, "end": 3, "label": "NEG", "score": from_words[0]["score"]}]


def test_a_saved_run_loads_back_to_the_same_predictions(fitted: TransferEstimator, tmp_path: Path) -> None:
    run = fitted.save(tmp_path / "run")
    loaded = transferkit.load(run)
    texts = ["very good film", "awful plot was sad"]
    assert loaded.task_.name == "ner" and list(loaded.predict(texts)) == list(fitted.predict(texts))


def test_probe_features_are_cached(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transferkit.tasks.tokens as tokens

    x, y = _tagged(40, seed=0)
    TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="ner", progress=False).fit(x, y)
    monkeypatch.setattr(tokens, "_forward_windows", lambda *a: pytest.fail("features recomputed"))
    TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="ner", progress=False,
                      strategy_params={"c": 0.5}).fit(x, y)


@pytest.mark.parametrize("strategy", ["lora", "lp_ft"])
def test_lora_and_lp_ft_train_through_the_loop(strategy: str, tiny_bert_dir: Path) -> None:
    x, y = _tagged(80, seed=0)
    est = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", strategy=strategy, task="ner", progress=False,
                            epochs=6, batch_size=8, lr=5e-3).fit(x, y)
    assert est.history_ and "val_f1" in est.history_[-1]
    assert est.evaluate(*_tagged(30, seed=1))["f1"] > 0.6


def test_tags_that_do_not_match_the_words_are_a_data_error(tiny_bert_dir: Path) -> None:
    est = TransferEstimator(backbone=f"hf:{tiny_bert_dir}", task="ner", progress=False)
    with pytest.raises(DataError, match=r"X\[0\]: 2 words but 1 tags"):
        est.fit([["good", "film"]], [["B-POS"]])
    with pytest.raises(DataError, match="no entity tags"):
        make_task("ner").fit_targets(["O O", "O"])


def test_a_backbone_without_tokens_is_refused() -> None:
    from transferkit.errors import BackboneError
    from transferkit.model import build_model

    task = make_task("ner").fit_targets(["B-X O"])
    with pytest.raises(BackboneError, match="gives no 'tokens' output"):
        build_model(create_backbone("lenet", pretrained=False), task)


# -- the command line ---------------------------------------------------------------------------
def _write_conll(path: Path, sentences: list[list[str]], tags: list[list[str]]) -> Path:
    blocks = ["\n".join(f"{w}\tX\t{t}" for w, t in zip(words, labels, strict=True))
              for words, labels in zip(sentences, tags, strict=True)]
    path.write_text("-DOCSTART-\tO\n\n" + "\n\n".join(blocks) + "\n")
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli_ner")
    data = _write_conll(folder / "train.conll", *_tagged(60, seed=0))
    test = _write_conll(folder / "test.conll", *_tagged(20, seed=1))
    run = folder / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "linear_probe", "--out", run)
    assert result.exit_code == 0, result.output
    assert "(linear_probe, ner)" in result.stderr  # inferred from .conll
    return test, run


def test_cli_fit_without_a_strategy_fine_tunes_with_the_tasks_defaults(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import tomllib

    from transferkit.tasks.base import default_fit_settings

    data = _write_conll(tmp_path / "train.conll", *_tagged(24, seed=0))
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "(finetune, ner)" in result.stderr
    recorded = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert recorded["strategy"] == "finetune" and recorded["batch_size"] == 8 and recorded["epochs"] == 1
    manifest = json.loads((tmp_path / "run" / "transferkit.json").read_text())
    assert manifest["strategy"] == "finetune" and manifest["strategy_info"]["batch_size"] == 8
    # a named strategy keeps the usual batch size; other tasks keep the automatic choice
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "finetune", "--epochs", "1",
                    "--out", tmp_path / "named")
    assert result.exit_code == 0, result.output
    assert tomllib.loads((tmp_path / "named" / "config.toml").read_text())["batch_size"] == 32
    assert default_fit_settings("classification") == {}


def test_cli_evaluate_and_predict_on_raw_text(cli_run: tuple[Path, Path]) -> None:
    test, run = cli_run
    metrics = json.loads(invoke("evaluate", run, test, "--json").stdout)
    assert metrics["f1"] > 0.8 and "token_accuracy" in metrics
    assert "entity F1" in invoke("evaluate", run, test).stdout
    entities = json.loads(invoke("predict", run, "the plot was awful", "--json").stdout)
    assert entities == [{"text": "awful", "start": 13, "end": 18, "label": "NEG", "score": entities[0]["score"]}]
    line = invoke("predict", run, "good film").stdout.strip().split("\t")
    assert line[0] == "input 1" and line[1].startswith("good [0:4] POS")


def test_cli_names_the_line_of_a_broken_tag_and_writes_no_run(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = tmp_path / "bad.conll"
    data.write_text("good\tB-POS\nfilm\tO\n\nbad\tB-NEG\nplot\tI-POS\n")
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", tmp_path / "run")
    assert_user_error(result, "bad.conll line 5", "'I-POS' follows 'B-NEG'")
    assert not (tmp_path / "run").exists()
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "good", "entities": [{"start": 0, "end": 40, "label": "POS"}]}) + "\n")
    result = invoke("fit", data, "--task", "ner", "--backbone", f"hf:{tiny_bert_dir}", "--out", tmp_path / "run")
    assert_user_error(result, "bad.jsonl line 1", "outside the text")
    assert not (tmp_path / "run").exists()


def test_an_entity_type_unseen_in_training_counts_as_missed(fitted: TransferEstimator) -> None:
    from transferkit.tasks.ner import UnseenEntityWarning

    with pytest.warns(UnseenEntityWarning, match=r"\['ORG'\]"):
        metrics = fitted.evaluate([["good", "film"]], [["B-POS", "B-ORG"]])
    assert metrics["per_type"]["ORG"]["recall"] == 0.0 and metrics["entities"] == 2


def test_every_tag_of_a_seen_type_is_known() -> None:
    assert make_task("ner").fit_targets(["B-PER O"]).names == ["B-PER", "I-PER", "O"]
    assert make_task("ner").fit_targets(["S-PER O"]).names == ["B-PER", "E-PER", "I-PER", "O", "S-PER"]


def test_an_entity_spans_its_words_in_the_text_and_scores_their_mean_tag_probability() -> None:
    from transferkit.data.tagged import Sentence
    from transferkit.tasks.ner import NamedEntities, WordScores

    text = "  Barack  Obama visited Paris."
    task = NamedEntities(["B-PER", "I-PER", "O"])
    sentence = Sentence.from_text(text)
    assert sentence.words == ["Barack", "Obama", "visited", "Paris", "."]
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.1, 0.3], [0.0, 0.0, 1.0]])
    entities = task.entities(WordScores(sentence, probs))
    assert entities == [{"text": "Barack  Obama", "start": 2, "end": 15, "label": "PER", "score": 0.8},
                        {"text": "Paris", "start": 24, "end": 29, "label": "PER", "score": 0.6}]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    record = task.record(WordScores(sentence, probs))
    assert task.json_line("input 1", record) == entities  # predict --json prints the list itself
