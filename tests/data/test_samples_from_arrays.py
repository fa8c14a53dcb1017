"""samples_from_arrays: in-memory data for the Python API."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from transferkit.data import MediaPathAsTextWarning, Samples, samples_from_arrays
from transferkit.errors import ConfigError, DataError


def test_image_batch_array_with_numeric_labels() -> None:
    X = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    samples = samples_from_arrays(X, y=np.array([0, 1, 1, 0]))
    assert samples.modality == "image" and len(samples) == 4
    assert samples.labels == ["0", "1", "1", "0"]
    assert samples.origins == ["X[0]", "X[1]", "X[2]", "X[3]"]
    assert samples.items[2].shape == (8, 8, 3)


def test_grayscale_batch_and_float_labels() -> None:
    samples = samples_from_arrays(np.random.default_rng(0).random((3, 5, 5)), y=[1.0, 2.0, 2.5])
    assert samples.modality == "image" and samples.labels == ["1", "2", "2.5"]


def test_list_of_pil_images_and_texts() -> None:
    images = [Image.new("RGB", (4, 4)), Image.new("L", (3, 3))]
    assert samples_from_arrays(images).modality == "image"
    texts = samples_from_arrays(["good film", "bad film"], y=pd.Series(["pos", "neg"]))
    assert texts.modality == "text" and texts.items == ["good film", "bad film"]
    assert texts.labels == ["pos", "neg"]
    assert samples_from_arrays(np.array(["a", "b"])).items == ["a", "b"]


def test_list_of_waveforms_and_pairs() -> None:
    waves = [np.zeros(1600, dtype=np.float32), (np.zeros(800, dtype=np.float32), 8000)]
    samples = samples_from_arrays(waves)
    assert samples.modality == "audio" and samples.labels is None
    batch = samples_from_arrays(np.zeros((3, 1600), dtype=np.float32), modality="audio")
    assert batch.modality == "audio" and len(batch) == 3


def test_strings_naming_media_files_are_files(tmp_path: Path, write) -> None:
    a = write.png(tmp_path / "a.png")
    b = write.png(tmp_path / "b.png")
    samples = samples_from_arrays([str(a), b], y=["x", "y"])
    assert samples.modality == "image"
    assert samples.items == [a, b] and samples.origins == [str(a), str(b)]
    with pytest.warns(MediaPathAsTextWarning, match="looks like the path of an image file"):
        assert samples_from_arrays([str(a)], modality="text").modality == "text"


def test_bad_file_fails_by_default_and_can_be_skipped(tmp_path: Path, write) -> None:
    good = write.wav(tmp_path / "good.wav")
    bad = write.truncated_wav(tmp_path / "bad.wav")
    with pytest.raises(DataError, match=f"{bad}: truncated WAV"):
        samples_from_arrays([good, bad], y=["a", "b"])
    with pytest.warns(UserWarning):
        samples = samples_from_arrays([good, bad], y=["a", "b"], on_error="skip")
    assert samples.items == [good] and samples.labels == ["a"]


def test_mixed_kinds_name_the_first_offending_index(tmp_path: Path, write) -> None:
    image = write.png(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"X\[2\] is a PIL image but X\[0\] is a text"):
        samples_from_arrays(["a", "b", Image.new("RGB", (2, 2))])
    with pytest.raises(DataError, match=r"X\[1\] is the image file .* but X\[0\] is a text"):
        samples_from_arrays(["hello", str(image)])
    with pytest.raises(DataError, match=r"X\[1\] is an array of shape \(4, 4\) but X\[0\] is an array of shape"):
        samples_from_arrays([np.zeros(100), np.zeros((4, 4))])


def test_modality_contradictions_and_ambiguity() -> None:
    with pytest.raises(DataError, match="X holds image items .* but modality 'text'"):
        samples_from_arrays([Image.new("RGB", (2, 2))], modality="text")
    with pytest.raises(DataError, match="X holds image items .* but modality 'audio'"):
        samples_from_arrays([Path("a.png")], modality="audio")
    with pytest.raises(DataError, match=r"X\[0\] \('a'\) is not a path to an image or audio file"):
        samples_from_arrays(["a", "b"], modality="image")
    with pytest.raises(DataError, match="ambiguous: pass modality='audio'"):
        samples_from_arrays(np.zeros((3, 100), dtype=np.float32))
    with pytest.raises(DataError, match="channels-last"):
        samples_from_arrays(np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown modality"):
        samples_from_arrays(["a"], modality="txt")


def test_bad_items_are_named_by_index() -> None:
    with pytest.raises(DataError, match=r"X\[1\]: float image arrays must hold values in \[0, 1\]"):
        samples_from_arrays([np.zeros((4, 4)), np.full((4, 4), 255.0)])
    with pytest.raises(DataError, match=r"X\[0\]: waveform contains NaN"):
        samples_from_arrays([np.array([np.nan, 0.0])])
    with pytest.raises(DataError, match=r"X\[1\] is an empty text"):
        samples_from_arrays(["fine", "  "])
    with pytest.raises(DataError, match=r"X\[0\] is a int"):
        samples_from_arrays([3, 4])


def test_bad_X_and_y() -> None:
    with pytest.raises(DataError, match="X holds no items"):
        samples_from_arrays([])
    with pytest.raises(DataError, match="not a single str"):
        samples_from_arrays("just one text")
    with pytest.raises(DataError, match="X has 2 items but y has 3 labels"):
        samples_from_arrays(["a", "b"], y=[0, 1, 1])
    with pytest.raises(DataError, match=r"y\[1\] is missing"):
        samples_from_arrays(["a", "b"], y=[0, None])
    with pytest.raises(DataError, match="one label per item"):
        samples_from_arrays(["a", "b"], y=np.eye(2))


def test_samples_checks_its_own_lengths() -> None:
    with pytest.raises(DataError, match="2 items but 1 labels"):
        Samples(items=["a", "b"], labels=["x"], modality="text", origins=["1", "2"])
