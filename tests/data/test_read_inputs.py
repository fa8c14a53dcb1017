"""read_inputs: what `transferkit predict RUN INPUTS...` reads."""

import warnings
from pathlib import Path

import pytest

from transferkit.data import SkippedItemWarning, read_inputs
from transferkit.errors import ConfigError, DataError


def test_literal_texts_and_a_txt_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("first review\n\n  second review  \n")
    samples = read_inputs(["a great film", str(notes)], "text")
    assert samples.modality == "text" and samples.labels is None
    assert samples.items == ["a great film", "first review", "second review"]
    assert samples.origins == ["input 1", f"{notes} line 1", f"{notes} line 3"]


def test_text_table_input_ignores_its_labels(make_csv) -> None:
    path = make_csv("d.csv", "text,label\nhi,a\nbye,b\n")
    samples = read_inputs([str(path)], "text")
    assert samples.items == ["hi", "bye"] and samples.labels is None


def test_text_inputs_that_look_like_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_inputs([str(tmp_path / "reviews.txt")], "text")
    with pytest.raises(DataError, match="is a folder"):
        read_inputs([str(tmp_path)], "text")
    assert read_inputs(["see notes.txt for more"], "text").items == ["see notes.txt for more"]


def test_files_and_folders_of_images(tmp_path: Path, write) -> None:
    one = write.png(tmp_path / "one.png")
    write.png(tmp_path / "more" / "b.png")
    write.png(tmp_path / "more" / "deeper" / "a.jpg")
    (tmp_path / "more" / ".DS_Store").write_bytes(b"x")
    samples = read_inputs([str(one), str(tmp_path / "more")], "image")
    assert samples.items == [one, tmp_path / "more" / "b.png", tmp_path / "more" / "deeper" / "a.jpg"]
    assert samples.origins == [str(p) for p in samples.items]


def test_unreadable_inputs_are_skipped_or_fail(tmp_path: Path, write) -> None:
    good = write.wav(tmp_path / "good.wav")
    bad = write.truncated_wav(tmp_path / "bad.wav")
    with pytest.warns(SkippedItemWarning):
        samples = read_inputs([str(good), str(bad)], "audio")
    assert samples.items == [good] and samples.skipped[0][0] == str(bad)
    with pytest.raises(DataError, match=f"{bad}: truncated WAV"):
        read_inputs([str(good), str(bad)], "audio", on_error="fail")


def test_inputs_of_the_wrong_modality(tmp_path: Path, write) -> None:
    wav = write.wav(tmp_path / "a.wav")
    with pytest.raises(DataError, match="is an audio file, but the model takes image"):
        read_inputs([str(wav)], "image")
    with pytest.raises(DataError, match="holds audio files .* but modality 'image'"):
        read_inputs([str(tmp_path)], "image")
    readme = tmp_path / "README.md"
    readme.write_text("x")
    with pytest.raises(DataError, match="not an image or audio file"):
        read_inputs([str(readme)], "audio")


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no inputs given"):
        read_inputs([], "image")
    with pytest.raises(DataError, match="no such file or folder"):
        read_inputs([str(tmp_path / "nope.png")], "image")
    with pytest.raises(ConfigError, match="unknown modality"):
        read_inputs(["x"], "video")


def test_a_text_model_given_a_media_path_warns_that_it_is_classified_as_text(tmp_path: Path) -> None:
    from transferkit.data import MediaPathAsTextWarning, samples_from_arrays

    with pytest.warns(MediaPathAsTextWarning, match=r"input 1 \('photos/cat.JPG'\) looks like the path of an image"):
        samples = read_inputs(["photos/cat.JPG", "a great film"], "text")
    assert samples.items == ["photos/cat.JPG", "a great film"]
    with pytest.warns(MediaPathAsTextWarning, match=r"X\[0\] \('call.wav'\) looks like the path of an audio"):
        samples_from_arrays(["call.wav", "fine"], modality="text")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_inputs(["see cat.jpg for the plot", "plain"], "text")  # a sentence that mentions a file
