"""Tagged words for named entities: CoNLL/BIO and JSONL, BIO and BIOES, and errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transferkit.data.tagged import Sentence, as_sentence, check_tags, read_tagged, split_tags
from transferkit.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_conll_with_tabs_extra_columns_and_docstart(tmp_path: Path) -> None:
    data = write(tmp_path / "train.conll", "-DOCSTART- -X- O O\n\nObama\tNNP\tB-PER\nvisited\tVBD\tO\n"
                 "Paris\tNNP\tB-LOC\n\n\nNew\tB-LOC\nYork\tI-LOC\n")
    samples = read_tagged(data)
    assert [s.words for s in samples.items] == [["Obama", "visited", "Paris"], ["New", "York"]]
    assert samples.labels == ["B-PER O B-LOC", "B-LOC I-LOC"]
    assert samples.origins == [f"{data} line 3", f"{data} line 8"] and samples.modality == "text"


def test_conll_whitespace_columns_keep_the_last_as_the_tag(tmp_path: Path) -> None:
    samples = read_tagged(write(tmp_path / "a.bio", "EU NNP B-ORG\nrejects VBZ O\n"))
    assert samples.items[0].words == ["EU", "rejects"] and samples.labels == ["B-ORG O"]


def test_bioes_is_accepted(tmp_path: Path) -> None:
    samples = read_tagged(write(tmp_path / "a.conll", "New B-LOC\nYork E-LOC\nis O\nbig O\nObama S-PER\n"))
    assert split_tags(samples.labels[0]) == ["B-LOC", "E-LOC", "O", "O", "S-PER"]


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("Obama B-PER\nParis B-LOC\nx I-PER\n", 3, "'I-PER' follows 'B-LOC'"),
    ("Obama O\nParis I-LOC\n", 2, "'I-LOC' follows 'O'"),
    ("Obama B-PER\nParis PERSON\n", 2, "'PERSON' is neither"),
    ("New B-LOC\nYork I-LOC\nis O\nObama S-PER\n", 3, "in BIOES an entity ends with E-LOC"),
    ("Obama\n", 1, "expected a token and a tag"),
])
def test_a_broken_tag_sequence_names_the_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    data = write(tmp_path / "bad.conll", "ok O\n\n" + text)
    with pytest.raises(DataError, match=f"line {line + 2}: .*{fragment}"):
        read_tagged(data)


def test_jsonl_tokens_and_tags(tmp_path: Path) -> None:
    lines = [{"tokens": ["Obama", "visited", "Paris"], "tags": ["B-PER", "O", "B-LOC"]}]
    samples = read_tagged(write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in lines)))
    assert samples.items[0].text == "Obama visited Paris" and samples.labels == ["B-PER O B-LOC"]


def test_jsonl_character_offsets_become_word_tags(tmp_path: Path) -> None:
    record = {"text": "Barack Obama visited Paris.", "entities": [{"start": 0, "end": 12, "label": "PER"},
                                                                    {"start": 21, "end": 26, "label": "LOC"}]}
    samples = read_tagged(write(tmp_path / "a.jsonl", json.dumps(record) + "\n"))
    sentence = samples.items[0]
    assert sentence.text == record["text"] and sentence.words == ["Barack", "Obama", "visited", "Paris", "."]
    assert samples.labels == ["B-PER I-PER O B-LOC O"]


def test_an_entity_edge_inside_a_word_splits_it(tmp_path: Path) -> None:
    record = {"text": "the EU-wide ban", "entities": [{"start": 4, "end": 6, "label": "ORG"}]}
    samples = read_tagged(write(tmp_path / "a.jsonl", json.dumps(record)))
    assert samples.items[0].words == ["the", "EU", "-wide", "ban"] and samples.labels == ["O B-ORG O O"]


@pytest.mark.parametrize(("record", "fragment"), [
    ({"text": "Obama", "entities": [{"start": 0, "end": 9, "label": "PER"}]}, "outside the text of 5 characters"),
    ({"text": "Obama", "entities": [{"start": -1, "end": 3, "label": "PER"}]}, "outside the text"),
    ({"tokens": ["a", "b"], "tags": ["O"]}, "2 tokens but 1 tags"),
    ({"tokens": ["a"], "tags": ["I-X"]}, "'I-X' follows 'O'"),
    ({"words": ["a"]}, "expected 'tokens' and 'tags'"),
])
def test_a_bad_jsonl_line_is_named(tmp_path: Path, record: dict, fragment: str) -> None:
    good = json.dumps({"tokens": ["a"], "tags": ["B-X"]})
    data = write(tmp_path / "a.jsonl", f"{good}\n\n{json.dumps(record)}\n")
    with pytest.raises(DataError, match=f"a.jsonl line 3.*{fragment}"):
        read_tagged(data)


def test_an_empty_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no tagged sentences"):
        read_tagged(write(tmp_path / "a.conll", "-DOCSTART- O\n\n"))


def test_raw_text_is_split_into_words_with_their_spans() -> None:
    sentence = as_sentence("Obama's visit to Paris, @user #tag")
    assert sentence.words == ["Obama", "'s", "visit", "to", "Paris", ",", "@user", "#tag"]
    assert all(sentence.text[s:e] == w for (s, e), w in zip(sentence.spans, sentence.words, strict=True))
    expected = Sentence("New York", ((0, 3), (4, 8)))
    assert as_sentence(["New", "York"]) == Sentence.from_words(["New", "York"]) == expected


def test_check_tags_accepts_valid_sequences() -> None:
    check_tags(["B-PER", "I-PER", "O", "B-LOC"], ["w"] * 4)
    check_tags(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], ["w"] * 5)
