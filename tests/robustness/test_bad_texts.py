"""Bad text inputs (CSV, TSV, JSONL tables), built by code, each fitted through the CLI."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from robust_support import Built, Case, image_folder, params, put, run_case, skip_and_fail, text_rows, write_table

ROWS = text_rows()  # 12 rows, two classes


def csv_text(rows: list[tuple[str, str]] = ROWS, header: str = "text,label", newline: str = "\n") -> str:
    lines = [header] + [f'"{t}",{label}' for t, label in rows]
    return newline.join(lines) + newline


def raw_file(name: str, content: Callable[[], bytes | str], *names: str,
             args: tuple[str, ...] = ()) -> Callable[[Path], Built]:
    """A table holding ``content``; ``names`` are formatted with ``{path}``."""

    def build(root: Path) -> Built:
        path = put(root / name, content())
        return Built(path, args, tuple(n.format(path=path) for n in names))

    return build


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


NUMERIC_ROWS = [(t, "1" if label == "pos" else "0") for t, label in ROWS]
GOOD_RECORDS: list[object] = [{"text": t, "label": label} for t, label in ROWS]


# -- whole-file problems: one error naming the file --------------------------------------------------
FILE_ERRORS: list[tuple[str, str, str, Callable[[], bytes | str], tuple[str, ...]]] = [
    ("zero-byte", "csv", "data.csv", lambda: b"", ("{path}",)),
    ("zero-byte", "tsv", "data.tsv", lambda: b"", ("{path}",)),
    ("zero-byte", "jsonl", "data.jsonl", lambda: b"", ("{path}",)),
    ("empty", "csv-header-only", "data.csv", lambda: "text,label\n", ("{path}",)),
    ("empty", "csv-blank-lines-only", "data.csv", lambda: "\n\n\n", ("{path}",)),
    ("empty", "jsonl-blank-lines-only", "data.jsonl", lambda: "\n  \n", ("{path}",)),
    ("wrong-encoding", "latin-1-csv", "data.csv",
     lambda: csv_text([("café très bon", "pos"), *ROWS]).encode("latin-1"), ("{path}", "UTF-8")),
    ("wrong-encoding", "utf-16-le-without-bom", "data.csv", lambda: csv_text().encode("utf-16-le"), ("{path}",)),
    ("wrong-encoding", "cp1252-jsonl", "data.jsonl",
     lambda: '{"text": "na\u00efve \u201cquote\u201d", "label": "pos"}\n'.encode("cp1252")
     + jsonl(GOOD_RECORDS).encode(),
     ("{path}",)),
    ("wrong-encoding", "one-invalid-byte-mid-file", "data.csv",
     lambda: csv_text().encode() + b'"bad \xff byte",pos\n', ("{path}",)),
    ("wrong-encoding", "nul-bytes-only", "data.csv", lambda: b"\x00" * 512, ("{path}",)),
    ("corrupt", "gzip-named-csv", "data.csv", lambda: gzip.compress(csv_text().encode()), ("{path}",)),
    ("corrupt", "png-named-csv", "data.csv",
     lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\xff" * 64, ("{path}",)),
    ("corrupt", "json-array-broken", "data.json", lambda: json.dumps(GOOD_RECORDS)[:-20], ("{path}",)),
    ("corrupt", "row-longer-than-header", "data.csv", lambda: csv_text() + '"x",pos,extra\n', ("{path}",)),
    ("corrupt", "unclosed-quote", "data.csv", lambda: csv_text() + '"never closed,pos\n', ("{path}",)),
    ("bad-columns", "no-text-column", "data.csv", lambda: csv_text(header="words,label"), ("{path}", "words")),
    ("bad-columns", "no-label-column", "data.csv", lambda: csv_text(header="text,sentiment"), ("{path}", "sentiment")),
    ("bad-columns", "tab-separated-named-csv", "data.csv", lambda: csv_text().replace(",", "\t"), ("{path}",)),
    ("bad-columns", "semicolon-separated", "data.csv", lambda: csv_text().replace(",", ";"), ("{path}",)),
    ("bad-columns", "no-header-row", "data.csv", lambda: csv_text().split("\n", 1)[1], ("{path}",)),
    ("bad-columns", "jsonl-fields-misnamed", "data.jsonl",
     lambda: jsonl([{"sentence_text": t, "label": label} for t, label in ROWS]), ("{path}", "sentence_text")),
    ("single-class", "every-row-one-label", "data.csv", lambda: csv_text([(t, "pos") for t, _ in ROWS]),
     ("{path}", "pos")),
    ("single-class", "one-row", "data.csv", lambda: csv_text(ROWS[:1]), ("{path}",)),
    ("bad-columns", "numeric-labels-0-1-without-task", "data.csv", lambda: csv_text(NUMERIC_ROWS),
     ("{path}", "--task")),
    ("mislabelled", "image-folder-as-text", "images", lambda: b"", ()),
    ("path", "plain-txt-file", "notes.txt", lambda: "a sentence\nanother\n", ("{path}",)),
    ("path", "xlsx-file", "data.xlsx", lambda: b"PK\x03\x04" + b"\x00" * 40, ("{path}", ".xlsx")),
    ("path", "csv-gz-file", "data.csv.gz", lambda: gzip.compress(csv_text().encode()), ("{path}", ".gz")),
    ("corrupt", "json-scalar", "data.json", lambda: "42\n", ("{path}",)),
]

# -- a bad row: skipped with a warning naming it, or one error naming it (--on-error fail) --------
ROW_PROBLEMS: list[tuple[str, str, str, Callable[[], str], str]] = [
    ("bad-cells", "empty-text-cell", "data.csv", lambda: csv_text() + '"",pos\n', "{path} row 14"),
    ("bad-cells", "whitespace-text-cell", "data.csv", lambda: csv_text() + '"   ",neg\n', "{path} row 14"),
    ("bad-cells", "empty-label-cell", "data.csv", lambda: csv_text() + '"good film",\n', "{path} row 14"),
    ("bad-cells", "row-shorter-than-header", "data.csv", lambda: csv_text() + '"lonely"\n', "{path} row 14"),
    ("corrupt", "jsonl-broken-line", "data.jsonl", lambda: jsonl(GOOD_RECORDS) + '{"text": "x", "label"\n',
     "{path} line 13"),
    ("corrupt", "jsonl-list-not-object", "data.jsonl", lambda: jsonl([*GOOD_RECORDS, ["a", "pos"]]), "{path} line 13"),
    ("corrupt", "jsonl-null-line", "data.jsonl", lambda: jsonl([*GOOD_RECORDS, None]), "{path} line 13"),
    ("bad-cells", "jsonl-label-is-object", "data.jsonl",
     lambda: jsonl([*GOOD_RECORDS, {"text": "fine", "label": {"a": 1}}]), "{path} line 13"),
    ("bad-cells", "jsonl-null-label", "data.jsonl", lambda: jsonl([*GOOD_RECORDS, {"text": "fine", "label": None}]),
     "{path} line 13"),
    ("bad-cells", "jsonl-missing-label-field", "data.jsonl", lambda: jsonl([*GOOD_RECORDS, {"text": "fine"}]),
     "{path} line 13"),
    ("bad-cells", "jsonl-text-is-object", "data.jsonl",
     lambda: jsonl([*GOOD_RECORDS, {"text": {"nested": "good"}, "label": "pos"}]), "{path} line 13"),
    ("bad-cells", "jsonl-text-is-list", "data.jsonl",
     lambda: jsonl([*GOOD_RECORDS, {"text": ["good", "film"], "label": "pos"}]), "{path} line 13"),
    ("bad-cells", "tsv-empty-text", "data.tsv", lambda: csv_text().replace(",", "\t").replace('"', "") + "\tpos\n",
     "{path} row 14"),
]

# -- unusual but readable tables: the fit works and nothing is skipped ---------------------------
READABLE: list[tuple[str, str, str, Callable[[], bytes | str]]] = [
    ("wrong-encoding", "utf-8-bom-csv", "data.csv", lambda: "\ufeff" + csv_text()),
    ("wrong-encoding", "utf-8-bom-jsonl", "data.jsonl", lambda: "\ufeff" + jsonl(GOOD_RECORDS)),
    ("wrong-encoding", "utf-8-bom-tsv", "data.tsv", lambda: "\ufeff" + csv_text().replace(",", "\t").replace('"', "")),
    ("wrong-encoding", "utf-16-csv-with-bom", "data.csv", lambda: csv_text().encode("utf-16")),
    ("wrong-encoding", "utf-16-tsv-with-bom", "data.tsv",
     lambda: csv_text().replace(",", "\t").replace('"', "").encode("utf-16")),
    ("wrong-encoding", "utf-32-csv-with-bom", "data.csv", lambda: csv_text().encode("utf-32")),
    ("wrong-encoding", "nul-byte-inside-a-cell", "data.csv", lambda: csv_text() + '"good\x00film",pos\n'),
    ("line-endings", "crlf", "data.csv", lambda: csv_text(newline="\r\n")),
    ("line-endings", "cr-only", "data.csv", lambda: csv_text(newline="\r")),
    ("line-endings", "jsonl-crlf", "data.jsonl", lambda: jsonl(GOOD_RECORDS).replace("\n", "\r\n")),
    ("line-endings", "no-final-newline", "data.csv", lambda: csv_text().rstrip("\n")),
    ("line-endings", "trailing-blank-lines", "data.csv", lambda: csv_text() + "\n\n\n"),
    ("cells", "quoted-newline-in-cell", "data.csv", lambda: csv_text() + '"good\nfilm",pos\n'),
    ("cells", "emoji-rtl-and-control-chars", "data.csv",
     lambda: csv_text() + '"good \U0001f600 \u05d8\u05d5\u05d1 \x07 film",pos\n'),
    ("huge", "100k-character-text", "data.csv", lambda: csv_text() + '"' + "good film " * 10000 + '",pos\n'),
    ("bad-columns", "300-extra-columns", "data.csv",
     lambda: "text,label," + ",".join(f"c{i}" for i in range(300)) + "\n"
     + "".join(f'"{t}",{label},' + ",".join("0" * 300) + "\n" for t, label in ROWS)),
    ("bad-columns", "upper-case-column-names", "data.csv", lambda: csv_text(header="TEXT,Label")),
    ("bad-columns", "duplicate-column-names", "data.csv",
     lambda: "text,text,label\n" + "".join(f'"{t}","{t}",{label}\n' for t, label in ROWS)),
    ("cells", "numbers-as-text", "data.jsonl", lambda: jsonl([*GOOD_RECORDS, {"text": 12345, "label": "pos"}])),
    ("cells", "tsv-literal-quotes", "data.tsv",
     lambda: "text\tlabel\n" + "".join(f'"{t}\t{label}\n' for t, label in ROWS)),
    ("cells", "json-array-of-objects", "data.json", lambda: json.dumps(GOOD_RECORDS)),
    ("cells", "duplicate-rows", "data.csv", lambda: csv_text(ROWS + ROWS)),
]


def option(args: tuple[str, ...], *names: str) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        path = put(root / "data.csv", csv_text())
        return Built(path, args, tuple(n.format(path=path) for n in names))

    return build


def val_table(content: Callable[[], bytes | str], name: str = "val.csv") -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        train = put(root / "data.csv", csv_text())
        val = put(root / name, content())
        return Built(train, ("--val", str(val)), (str(val),))

    return build


def folder_of(files: dict[str, str]) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        for name, text in files.items():
            put(root / name, text)
        return Built(root, ("--modality", "text"), (str(root),))

    return build


def image_folder_as_text(root: Path) -> Built:
    image_folder(root)
    return Built(root, ("--modality", "text"), (str(root),))


def table_of_image_and_audio(root: Path) -> Built:
    put(root / "a.png", b"")
    put(root / "b.wav", b"")
    path = write_table(root / "media.csv", [("a.png", "x"), ("b.wav", "y")], header=("path", "label"))
    return Built(path, (), (str(path),))


# tasks that have landed
def multilabel_rows(bad: str | None = None) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        labels = ["pos|plot", "neg", "pos", "neg|acting", "pos|acting", "neg|plot"] * 2
        rows = [(t, label) for (t, _), label in zip(ROWS, labels, strict=True)]
        path = write_table(root / "data.csv", rows + ([("good plot", bad)] if bad is not None else []))
        return Built(path, (), (f"{path} row 14",) if bad is not None and not bad.strip() else ())

    return build


def regression_rows(bad: str | None = None) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        rows = [(t, f"{i % 5 + 1}.0") for i, (t, _) in enumerate(ROWS)]
        path = write_table(root / "data.csv", rows + ([("good film", bad)] if bad is not None else []),
                           header=("text", "rating"))
        names = (f"{path} row 14",) + ((bad,) if bad and bad.strip() else ())
        return Built(path, ("--label-column", "rating"), names if bad is not None else ())

    return build


def jsonl_label_lists(root: Path) -> Built:
    records = [{"text": t, "label": sorted({label, "plot"} if i % 3 else {label})} for i, (t, label) in enumerate(ROWS)]
    return Built(put(root / "data.jsonl", jsonl(records)))



CASES: list[Case] = []
for kind, what, name, content, names in FILE_ERRORS:
    build = image_folder_as_text if what == "image-folder-as-text" else raw_file(name, content, *names)
    CASES.append(Case(kind, what, "error", build))
for kind, what, name, content, names in ROW_PROBLEMS:
    CASES += skip_and_fail(kind, what, raw_file(name, content, names))
for kind, what, name, content in READABLE:
    CASES.append(Case(kind, what, "ok", raw_file(name, content)))
CASES += [
    Case("bad-columns", "unknown-text-column-option", "error", option(("--text-column", "body2"), "{path}", "body2")),
    Case("bad-columns", "unknown-label-column-option", "error", option(("--label-column", "y2"), "{path}", "y2")),
    Case("option", "path-column-with-modality-text", "error",
         option(("--modality", "text", "--path-column", "text"), "text")),
    Case("option", "modality-image-on-text-table", "error", option(("--modality", "image"), "{path}", "image")),
    Case("option", "modality-audio-on-text-table", "error", option(("--modality", "audio"), "{path}", "audio")),
    Case("empty", "data-folder", "error", folder_of({})),
    Case("empty", "folder-of-txt-files", "error", folder_of({"pos/a.txt": "good", "neg/b.txt": "bad"})),
    Case("mixed-modality", "table-of-image-and-audio-paths", "error", table_of_image_and_audio),
    Case("zero-byte", "validation-table", "error", val_table(lambda: b"")),
    Case("wrong-encoding", "latin-1-validation-table", "error",
         val_table(lambda: csv_text([("très", "pos")]).encode("latin-1"))),
    Case("mislabelled", "validation-label-unseen-in-training", "error",
         val_table(lambda: csv_text([("good", "pos"), ("meh", "neutral")]))),
    Case("bad-columns", "validation-table-without-label-column", "error",
         val_table(lambda: csv_text(header="text,sentiment"))),
    Case("task", "pipe-separated-labels", "ok", multilabel_rows(), "multilabel"),
    Case("task", "jsonl-label-lists", "ok", jsonl_label_lists, "multilabel"),
    *skip_and_fail("task", "empty-label-set", multilabel_rows(" "), "multilabel"),
    Case("task", "numeric-ratings", "ok", regression_rows(), "regression"),
    Case("task", "numeric-labels-0-1-as-classes", "ok", raw_file("data.csv", lambda: csv_text(NUMERIC_ROWS)),
         "classification-explicit"),
    Case("task", "non-numeric-rating", "error", regression_rows("five"), "regression"),
    Case("task", "nan-rating", "error", regression_rows("NaN"), "regression"),
    Case("task", "infinite-rating", "error", regression_rows("-inf"), "regression"),
    *skip_and_fail("task", "empty-rating", regression_rows(""), "regression"),
]


# -- named entities (--task ner): CoNLL/BIO files and JSONL of tokens and tags or of character spans --
NER_SENTENCES = [
    [("good", "B-PER"), ("film", "O"), ("plot", "B-LOC")],
    [("bad", "O"), ("acting", "B-PER"), ("is", "O"), ("the", "O")],
    [("great", "B-LOC"), ("movie", "I-LOC"), ("was", "O")],
    [("awful", "O"), ("plot", "B-PER"), ("very", "I-PER"), ("boring", "O")],
] * 3


def conll(sentences: list[list[tuple[str, str]]] = NER_SENTENCES) -> str:
    return "\n\n".join("\n".join(f"{word} {tag}" for word, tag in sentence) for sentence in sentences) + "\n"


def ner_file(name: str, content: Callable[[], bytes | str], *names: str) -> Callable[[Path], Built]:
    return raw_file(name, content, *names)


def ner_jsonl_tokens(extra: object | None = None) -> Callable[[], str]:
    records: list[object] = [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in NER_SENTENCES]
    return lambda: jsonl(records + ([extra] if extra is not None else []))


NER_CASES: list[tuple[str, str, str, Callable[[], bytes | str], str, tuple[str, ...]]] = [
    ("task", "conll-file", "data.conll", conll, "ok", ()),
    ("task", "bio-file-crlf", "data.bio", lambda: conll().replace("\n", "\r\n"), "ok", ()),
    ("task", "jsonl-tokens-and-tags", "data.jsonl", ner_jsonl_tokens(), "ok", ()),
    ("task", "jsonl-character-spans", "data.jsonl",
     lambda: jsonl([{"text": "good film plot", "entities": [{"start": 0, "end": 4, "label": "PER"}]},
                    {"text": "great movie", "entities": [{"start": 0, "end": 11, "label": "LOC"}]}] * 4), "ok", ()),
    ("task", "conll-utf-8-bom", "data.conll", lambda: "\ufeff" + conll(), "ok", ()),
    ("zero-byte", "conll", "data.conll", lambda: b"", "error", ("{path}",)),
    ("wrong-encoding", "latin-1-conll", "data.conll", lambda: (conll() + "\ncaf\xe9 O\n").encode("latin-1"), "error",
     ("{path}",)),
    ("corrupt", "conll-tag-not-bio", "data.conll", lambda: conll() + "\nfilm PERSON\n", "error", ("{path}", "line")),
    ("corrupt", "conll-i-tag-continues-nothing", "data.conll", lambda: conll() + "\nthe O\nfilm I-ORG\n", "error",
     ("{path}", "line")),
    ("corrupt", "conll-word-without-tag", "data.conll", lambda: conll() + "\nlonely\n", "error", ("{path}",)),
    ("corrupt", "jsonl-more-tags-than-tokens", "data.jsonl",
     ner_jsonl_tokens({"tokens": ["good"], "tags": ["O", "B-PER"]}), "error", ("{path}",)),
    ("corrupt", "jsonl-span-outside-text", "data.jsonl",
     lambda: jsonl([{"text": "good film", "entities": [{"start": 5, "end": 99, "label": "PER"}]}] * 3), "error",
     ("{path}",)),
    ("corrupt", "jsonl-tags-not-a-list", "data.jsonl", ner_jsonl_tokens({"tokens": ["good"], "tags": "O"}), "error",
     ("{path}",)),
    ("single-class", "conll-only-o-tags", "data.conll",
     lambda: conll([[(w, "O") for w, _ in s] for s in NER_SENTENCES]), "error", ("{path}",)),
]
for kind, what, name, content, expect, names in NER_CASES:
    CASES.append(Case(kind, what, expect, ner_file(name, content, *names), "ner-explicit"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_text_input(case: Case, tmp_path: Path, backbone_args: dict[str, tuple[str, ...]]) -> None:
    run_case(case, tmp_path, backbone_args["text"])
