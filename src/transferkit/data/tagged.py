"""Reading word-tagged sentences (named entities): CoNLL/BIO files and JSONL, in the BIO or BIOES scheme.

A sentence is kept as a ``Sentence``: its text and the character span of each word, so that
predictions on words come back as spans of the text the user gave. Its tags are one string per
sample in ``Samples.labels``, separated by spaces (``"B-PER O B-LOC"``).

Formats:

* CoNLL/BIO (``.conll``, ``.bio``): one word per line, the token in the first column and the tag in
  the last (tab- or whitespace-separated; the columns between are ignored), a blank line between
  sentences, ``-DOCSTART-`` lines skipped.
* JSONL: ``{"tokens": [...], "tags": [...]}`` per line, or ``{"text": ..., "entities": [{"start",
  "end", "label"}]}`` with character offsets (the text is split into words by ``WORD_PATTERN`` and at
  the entities' edges).

Tags are checked: each is ``O`` or ``B-``/``I-``/``E-``/``S-`` and a type, and every ``I-``/``E-``
continues an entity of its type (strict BIO or BIOES). The first offending line is named.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.data.samples import Samples
from transferkit.errors import DataError

TAGGED_EXTENSIONS: frozenset[str] = frozenset({".conll", ".bio"})
JSONL_EXTENSIONS: frozenset[str] = frozenset({".jsonl", ".ndjson", ".json"})
# raw text into words: URLs, @mentions and #tags whole, clitics ('s, 'm) apart, punctuation one mark at a time
WORD_PATTERN = re.compile(r"https?://\S+|[@#]?\w+(?:[-.]\w+)*|'\w+|[^\w\s]")
TAG_SEPARATOR = " "
PREFIXES = frozenset({"B", "I", "E", "S"})


@dataclass(frozen=True)
class Sentence:
    """A text and the character span ``[start, end)`` of each of its words.

    Example:
        >>> Sentence.from_text("Obama visited Paris.").words
        ['Obama', 'visited', 'Paris', '.']
    """

    text: str
    spans: tuple[tuple[int, int], ...]

    @property
    def words(self) -> list[str]:
        return [self.text[start:end] for start, end in self.spans]

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Sentence:
        """Words joined by single spaces."""
        spans, position = [], 0
        for word in words:
            spans.append((position, position + len(word)))
            position += len(word) + 1
        return cls(" ".join(words), tuple(spans))

    @classmethod
    def from_text(cls, text: str, cuts: Iterable[int] = ()) -> Sentence:
        """Words of raw text by ``WORD_PATTERN``, also split at the character offsets ``cuts``."""
        points = sorted(set(cuts))
        spans = []
        for match in WORD_PATTERN.finditer(text):
            start = match.start()
            for cut in points:
                if start < cut < match.end():
                    spans.append((start, cut))
                    start = cut
            spans.append((start, match.end()))
        return cls(text, tuple(spans))


def as_sentence(item: Any) -> Sentence:
    """A sample's item as a ``Sentence``: one already, a list of words, or raw text (split into words).

    Raises:
        DataError: anything else.
    """
    if isinstance(item, Sentence):
        return item
    if isinstance(item, str):
        return Sentence.from_text(item)
    if isinstance(item, list | tuple) and all(isinstance(word, str) for word in item):
        return Sentence.from_words([str(word) for word in item])
    raise DataError(f"a sentence is a text or a list of words, not {type(item).__name__}")


def split_tags(label: str) -> list[str]:
    """A sample's label string as its tags."""
    return label.split()


def join_tags(tags: Sequence[str]) -> str:
    return TAG_SEPARATOR.join(tags)


def check_tags(tags: Sequence[str], where: Sequence[str]) -> None:
    """Check that ``tags`` are BIO or BIOES and that every entity is well formed.

    Args:
        where: per tag, what to name in the error (``data.conll line 12``).

    Raises:
        DataError: a tag that is neither ``O`` nor ``PREFIX-TYPE``, or an ``I-``/``E-`` tag that does
            not continue a ``B-``/``I-`` of its type, or a ``B-``/``I-`` left open before a tag that
            does not continue it in a BIOES sentence (names the first such tag's place).
    """
    bioes = any(tag[:2] in ("E-", "S-") for tag in tags)
    previous = "O"
    for index, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if tag != "O" and (prefix not in PREFIXES or not kind):
            raise DataError(f"{where[index]}: tag {tag!r} is neither 'O' nor B-/I-/E-/S- followed by a type")
        open_prefix, _, open_kind = previous.partition("-")
        is_open = open_prefix in ("B", "I")
        if prefix in ("I", "E") and not (is_open and open_kind == kind):
            raise DataError(f"{where[index]}: tag {tag!r} follows {previous!r}; an {prefix}- tag must continue a "
                            f"B-{kind} or I-{kind}")
        if bioes and is_open and not (prefix in ("I", "E") and kind == open_kind):
            raise DataError(f"{where[index]}: tag {tag!r} follows {previous!r}; in BIOES an entity ends with "
                            f"E-{open_kind}")
        previous = tag
    if bioes and previous.partition("-")[0] in ("B", "I"):
        raise DataError(f"{where[-1]}: the sentence ends inside an entity ({previous!r}); in BIOES it ends with "
                        f"E-{previous.partition('-')[2]}")


def read_tagged(path: str | Path) -> Samples:
    """Read word-tagged sentences from a CoNLL/BIO file or JSONL (see the module docstring).

    Returns:
        Text ``Samples`` whose items are ``Sentence``s and whose labels are space-separated tags;
        origins name the file and the line where each sentence starts.

    Raises:
        DataError: a missing or unreadable file, a malformed line or tag (naming the line), an offset
            outside the text, or no sentence at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    reader = _read_jsonl if path.suffix.lower() in JSONL_EXTENSIONS else _read_conll
    sentences, labels, origins = reader(text, path)
    if not sentences:
        raise DataError(f"no tagged sentences in {path}")
    return Samples(items=sentences, labels=labels, modality="text", origins=origins)


def _read_conll(text: str, path: Path) -> tuple[list[Sentence], list[str], list[str]]:
    sentences: list[Sentence] = []
    labels: list[str] = []
    origins: list[str] = []
    words: list[str] = []
    tags: list[str] = []
    places: list[str] = []

    def close() -> None:
        if words:
            check_tags(tags, places)
            sentences.append(Sentence.from_words(words))
            labels.append(join_tags(tags))
            origins.append(places[0])
            words.clear(), tags.clear(), places.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            close()
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        columns = [c.strip() for c in columns]
        if columns[0] == "-DOCSTART-":
            close()
            continue
        if len(columns) < 2 or not columns[0] or not columns[-1]:
            raise DataError(f"{path} line {number}: expected a token and a tag, got {line.strip()!r}")
        words.append(columns[0])
        tags.append(columns[-1])
        places.append(f"{path} line {number}")
    close()
    return sentences, labels, origins


def _read_jsonl(text: str, path: Path) -> tuple[list[Sentence], list[str], list[str]]:
    sentences: list[Sentence] = []
    labels: list[str] = []
    origins: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with tokens and tags, or text and entities")
        if "tokens" in record:
            sentence, tags = _tokens_record(record, where)
        elif "text" in record:
            sentence, tags = _entities_record(record, where)
        else:
            raise DataError(f"{where}: expected 'tokens' and 'tags', or 'text' and 'entities'")
        check_tags(tags, [f"{where} (word {i + 1})" for i in range(len(tags))])
        sentences.append(sentence)
        labels.append(join_tags(tags))
        origins.append(where)
    return sentences, labels, origins


def _tokens_record(record: dict[str, Any], where: str) -> tuple[Sentence, list[str]]:
    tokens, tags = record.get("tokens"), record.get("tags")
    if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
        raise DataError(f"{where}: 'tokens' and 'tags' must be non-empty lists")
    if len(tokens) != len(tags):
        raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
    words = [str(token) for token in tokens]
    if any(not word or any(ch.isspace() for ch in word) for word in words):
        raise DataError(f"{where}: a token is empty or contains whitespace")
    return Sentence.from_words(words), [str(tag).strip() for tag in tags]


def _entities_record(record: dict[str, Any], where: str) -> tuple[Sentence, list[str]]:
    text, entities = record.get("text"), record.get("entities", [])
    if not isinstance(text, str) or not isinstance(entities, list):
        raise DataError(f"{where}: 'text' must be a string and 'entities' a list")
    spans: list[tuple[int, int, str]] = []
    for entity in entities:
        try:
            start, end, label = int(entity["start"]), int(entity["end"]), str(entity["label"]).strip()
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: each entity needs integer 'start' and 'end' and a 'label'") from None
        if not 0 <= start < end <= len(text):
            raise DataError(f"{where}: entity {label!r} at [{start}, {end}) lies outside the text of "
                            f"{len(text)} characters")
        if not label or any(ch.isspace() for ch in label):
            raise DataError(f"{where}: entity label {label!r} is empty or contains whitespace")
        spans.append((start, end, label))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise DataError(f"{where}: entities {first!r} and {second!r} overlap")
    sentence = Sentence.from_text(text, cuts=[edge for start, end, _ in spans for edge in (start, end)])
    if not sentence.spans:
        raise DataError(f"{where}: the text has no words")
    tags = ["O"] * len(sentence.spans)
    for start, end, label in spans:
        inside = [i for i, (s, e) in enumerate(sentence.spans) if s >= start and e <= end]
        if not inside:
            raise DataError(f"{where}: entity {label!r} at [{start}, {end}) covers no word")
        for position, index in enumerate(inside):
            tags[index] = f"{'B' if position == 0 else 'I'}-{label}"
    return sentence, tags
