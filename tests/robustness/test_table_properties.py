"""Property-based tests of the table readers: any bytes in a CSV, TSV or JSONL file are read, or
refused with a DataError that names the file; never another exception."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferkit.data import read_dataset
from transferkit.errors import DataError

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes that look like tables often enough to reach the column and cell logic
TABLE_PIECES = st.sampled_from([
    b"text", b"label", b"path", b"labels", b",", b"\t", b";", b'"', b"'", b"\n", b"\r\n", b"\r", b" ", b"pos",
    b"neg", b"a|b", b"|", b"0", b"1.5", b"nan", b"\x00", b"\xff", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe9",
    b"img.png", b"clip.wav", b"../x.jpg", b"/etc/passwd", b"\\", b"#", b"=cmd()",
])
TABLE_BYTES = st.one_of(st.binary(max_size=300), st.lists(TABLE_PIECES, max_size=60).map(b"".join))

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
FIELD_NAMES = st.sampled_from(["text", "label", "labels", "path", "sentence", "class", "y", "audio", "other"])
RECORDS = st.lists(st.one_of(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=4), JSON_VALUES), max_size=12)


def read_or_refuse(path: Path, **options: object) -> None:
    """Read ``path``; a refusal must be a DataError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = read_dataset(path, **options)
    except DataError as exc:
        assert str(path) in str(exc) or path.name in str(exc), str(exc)
        assert "\n" not in str(exc).strip(), str(exc)
        return
    assert len(samples) > 0 and len(samples.items) == len(samples.origins)
    if samples.labels is not None:
        assert len(samples.labels) == len(samples)
        assert all(isinstance(label, str) for label in samples.labels)
    if samples.modality == "text":
        assert all(isinstance(text, str) and text.strip() for text in samples.items)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
@pytest.mark.parametrize("require_labels", [True, False], ids=["labelled", "unlabelled"])
@SETTINGS
@given(content=TABLE_BYTES, on_error=st.sampled_from(["skip", "fail"]))
def test_any_table_bytes_read_or_raise_a_data_error_naming_the_file(suffix: str, require_labels: bool,
                                                                    content: bytes, on_error: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        read_or_refuse(path, on_error=on_error, require_labels=require_labels)


@SETTINGS
@given(records=RECORDS, as_array=st.booleans(), on_error=st.sampled_from(["skip", "fail"]),
       require_labels=st.booleans())
def test_any_json_records_read_or_raise_a_data_error_naming_the_file(records: list[object], as_array: bool,
                                                                     on_error: str, require_labels: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("data.json" if as_array else "data.jsonl")
        text = json.dumps(records) if as_array else "".join(json.dumps(r) + "\n" for r in records)
        path.write_text(text, encoding="utf-8")
        read_or_refuse(path, on_error=on_error, require_labels=require_labels)


@SETTINGS
@given(rows=st.lists(st.tuples(st.text(max_size=30), st.text(max_size=8)), max_size=15),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
def test_any_text_cells_in_any_encoding_read_or_raise_a_data_error(rows: list[tuple[str, str]],
                                                                   encoding: str) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        try:
            path.write_bytes(buffer.getvalue().encode(encoding))
        except UnicodeEncodeError:
            path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))
        read_or_refuse(path)
