"""read_dataset on CSV, TSV and JSONL tables of texts or of media file paths."""

import json
import warnings
from pathlib import Path

import pytest

from transferkit.data import SkippedItemWarning, read_dataset
from transferkit.errors import DataError


def test_csv_of_texts_with_numeric_labels(make_csv) -> None:
    path = make_csv("data.csv", 'text,label\n"great, really great",1\nawful,0\nfine,1\n')
    samples = read_dataset(path)
    assert samples.modality == "text"
    assert samples.items == ["great, really great", "awful", "fine"]
    assert samples.labels == ["1", "0", "1"]
    assert samples.origins == [f"{path} row 2", f"{path} row 3", f"{path} row 4"]


def test_tsv_fields_are_literal_and_columns_found_by_alias(make_csv) -> None:
    path = make_csv("dev.tsv", 'label\tcontent\n0\t"quoted" start\n1\tit \'s fine\n')
    samples = read_dataset(path)
    assert samples.items == ['"quoted" start', "it 's fine"]
    assert samples.labels == ["0", "1"]


def test_jsonl_with_typed_labels_and_blank_lines(make_csv) -> None:
    rows = [{"sentence": "good", "y": 1}, {"sentence": "bad", "y": 0.0}, {"sentence": "ok", "y": True}]
    path = make_csv("d.jsonl", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]))
    samples = read_dataset(path)
    assert samples.items == ["good", "bad", "ok"]
    assert samples.labels == ["1", "0", "true"]
    assert samples.origins[2] == f"{path} line 4"


def test_json_array_of_records(make_csv) -> None:
    path = make_csv("d.json", json.dumps([{"Text": "a", "Category": "x"}, {"Text": "b", "Category": "z"}]))
    samples = read_dataset(path)
    assert samples.items == ["a", "b"] and samples.labels == ["x", "z"]


def test_named_columns(make_csv) -> None:
    path = make_csv("d.csv", "id,msg,sentiment\n1,hi,pos\n2,bye,neg\n")
    samples = read_dataset(path, text_column="msg", label_column="sentiment")
    assert samples.items == ["hi", "bye"] and samples.labels == ["pos", "neg"]


def test_wrong_column_lists_columns_and_the_option(make_csv) -> None:
    path = make_csv("d.csv", "id,msg,sentiment\n1,hi,pos\n2,bye,neg\n")
    with pytest.raises(DataError, match="no text column in .*'id', 'msg', 'sentiment'.*--text-column"):
        read_dataset(path)
    with pytest.raises(DataError, match="no label column .*--label-column"):
        read_dataset(path, text_column="msg")
    with pytest.raises(DataError, match="no column 'txt' in .*columns: 'id', 'msg', 'sentiment'"):
        read_dataset(path, text_column="txt", label_column="sentiment")


def test_unlabelled_table(make_csv) -> None:
    path = make_csv("d.csv", "text\nhello\nworld\n")
    with pytest.raises(DataError, match="no label column"):
        read_dataset(path)
    assert read_dataset(path, require_labels=False).labels is None


def test_empty_cells_are_skipped_or_fail(make_csv) -> None:
    path = make_csv("d.csv", "text,label\nhello,a\n   ,b\nworld,\nbye,b\n")
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(path)
    assert samples.items == ["hello", "bye"]
    assert samples.skipped == [
        (f"{path} row 3", "empty text in column 'text'"),
        (f"{path} row 4", "empty label in column 'label'"),
    ]
    assert sum("skipping" in str(w.message) for w in record) == 2
    with pytest.raises(DataError, match=f"{path} row 3: empty text"):
        read_dataset(path, on_error="fail")


def test_one_class_in_a_table(make_csv) -> None:
    path = make_csv("d.csv", "text,label\na,pos\nb,pos\n")
    with pytest.raises(DataError, match=f"found only one class 'pos' in column 'label' of {path}"):
        read_dataset(path)


def test_malformed_files(make_csv, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="malformed CSV"):
        read_dataset(make_csv("bad.csv", "text,label\na,b,c,d\n"))
    with pytest.raises(DataError, match="is empty"):
        read_dataset(make_csv("empty.csv", ""))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_dataset(latin)


def test_bad_json_line_is_skipped(make_csv) -> None:
    path = make_csv("d.jsonl", '{"text": "a", "label": 1}\n{"text": oops}\n{"text": "b", "label": 2}\n')
    with pytest.warns(SkippedItemWarning):
        samples = read_dataset(path)
    assert samples.items == ["a", "b"]
    assert samples.skipped[0][0] == f"{path} line 2"


def test_table_of_image_paths(tmp_path: Path, write) -> None:
    write.png(tmp_path / "imgs" / "a.png")
    write.png(tmp_path / "imgs" / "b.png")
    absolute = write.png(tmp_path / "elsewhere" / "c.png")
    path = tmp_path / "meta" / "data.csv"
    path.parent.mkdir()
    path.write_text(f"image,class\n../imgs/a.png,x\n../imgs/b.png,y\n{absolute},y\n")

    samples = read_dataset(path)
    assert samples.modality == "image"
    assert samples.items == [path.parent / "../imgs/a.png", path.parent / "../imgs/b.png", absolute]
    assert samples.labels == ["x", "y", "y"]
    assert samples.origins[2] == str(absolute)
    assert samples.label_sources[1] == f"{path.parent / '../imgs/b.png'} ({path} row 3)"  # a label names its row
    assert samples.subset([1]).label_sources == [samples.label_sources[1]]


def test_table_of_audio_paths_with_a_missing_and_a_truncated_file(tmp_path: Path, write) -> None:
    write.wav(tmp_path / "a.wav")
    write.wav(tmp_path / "b.wav")
    write.truncated_wav(tmp_path / "cut.wav")
    path = tmp_path / "d.tsv"
    path.write_text("path\tlabel\na.wav\tone\nb.wav\ttwo\ngone.wav\ttwo\ncut.wav\tone\n")
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(path)
    assert samples.modality == "audio" and len(samples) == 2
    reasons = dict(samples.skipped)
    assert reasons[f"{tmp_path / 'gone.wav'} ({path} row 4)"] == "no such file"
    assert reasons[f"{tmp_path / 'cut.wav'} ({path} row 5)"].startswith("truncated WAV file")
    assert any("skipped 2 of 4" in str(w.message) for w in record)


def test_jsonl_skip_count_includes_the_lines_that_do_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": f"sentence {i}", "label": "ab"[i % 2]}) for i in range(16)]
    path.write_text("\n".join([*lines[:5], '{"text": "cut off', *lines[5:]]) + "\n")  # 17 lines
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(path)
    assert len(samples) == 16 and samples.skipped[0][0] == f"{path} line 6"
    summaries = [str(w.message) for w in record if "skipped" in str(w.message) and " of " in str(w.message)]
    assert summaries == [f"skipped 1 of 17 items in {path} that could not be read"]


def test_path_table_modality_checks(tmp_path: Path, write) -> None:
    write.png(tmp_path / "a.png")
    write.wav(tmp_path / "b.wav")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("file,label\na.png,x\nb.wav,y\n")
    with pytest.raises(DataError, match="names both image and audio files"):
        read_dataset(mixed)
    images = tmp_path / "images.csv"
    images.write_text("file,label\na.png,x\na.png,y\n")
    with pytest.raises(DataError, match="names image files .* but modality 'audio'"):
        read_dataset(images, modality="audio")


def test_text_table_with_an_image_modality(make_csv) -> None:
    path = make_csv("d.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(DataError, match="modality 'image' needs a column of file paths.*--path-column"):
        read_dataset(path, modality="image")


def test_a_path_column_of_non_files_falls_back_to_text(make_csv) -> None:
    path = make_csv("d.csv", "file,text,label\nreport-1,hello,a\nreport-2,bye,b\n")
    samples = read_dataset(path)
    assert samples.modality == "text" and samples.items == ["hello", "bye"]


def test_all_rows_unusable(make_csv) -> None:
    path = make_csv("d.csv", "text,label\n,a\n,b\n")
    with warnings.catch_warnings(), pytest.raises(DataError, match="no usable rows"):
        warnings.simplefilter("ignore", SkippedItemWarning)
        read_dataset(path)
