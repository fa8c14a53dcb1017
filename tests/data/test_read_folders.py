"""read_dataset on image and audio folders."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import Samples, SkippedItemWarning, read_dataset
from transferkit.errors import ConfigError, DataError


def test_image_folder_reads_classes_in_order_and_ignores_non_media(image_folder: Path) -> None:
    samples = read_dataset(image_folder)

    assert samples.modality == "image"
    assert len(samples) == 6
    assert samples.labels == ["cat"] * 3 + ["dog"] * 3
    assert samples.classes == ["cat", "dog"]
    assert samples.items[0] == image_folder / "cat" / "c0.png"
    assert all(isinstance(item, Path) and item.suffix == ".png" for item in samples.items)
    assert samples.origins == [str(item) for item in samples.items]
    assert samples.skipped == []


def test_class_folders_are_searched_recursively(image_folder: Path, write) -> None:
    write.png(image_folder / "cat" / "indoor" / "deep.png")
    samples = read_dataset(image_folder)
    assert image_folder / "cat" / "indoor" / "deep.png" in samples.items
    assert samples.labels.count("cat") == 4


def test_audio_folder(audio_folder: Path) -> None:
    samples = read_dataset(audio_folder)
    assert samples.modality == "audio"
    assert samples.classes == ["high", "low"]
    assert len(samples) == 4


def test_corrupt_image_is_skipped_with_one_warning_naming_it(image_folder: Path, write) -> None:
    bad = write.corrupt_jpeg(image_folder / "cat" / "broken.jpg")
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(image_folder)

    messages = [str(w.message) for w in record]
    assert [m for m in messages if str(bad) in m] == [f"skipping {bad}: not a readable image file"]
    assert any(m.startswith("skipped 1 of 7 items") for m in messages)
    assert len(samples) == 6 and bad not in samples.items
    assert samples.skipped == [(str(bad), "not a readable image file")]


def test_truncated_image_is_caught_when_read(image_folder: Path, write) -> None:
    bad = write.truncated_jpeg(image_folder / "dog" / "half.jpg")
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(image_folder)
    assert any(f"skipping {bad}: corrupt or truncated image" in str(w.message) for w in record)
    assert [origin for origin, _ in samples.skipped] == [str(bad)]


def test_on_error_fail_raises_naming_the_file(image_folder: Path, write) -> None:
    bad = write.corrupt_jpeg(image_folder / "cat" / "broken.jpg")
    with pytest.raises(DataError, match=f"{bad}: not a readable image"):
        read_dataset(image_folder, on_error="fail")


def test_truncated_wav_in_a_folder_is_skipped(audio_folder: Path, write) -> None:
    bad = write.truncated_wav(audio_folder / "low" / "cut.wav")
    with pytest.warns(SkippedItemWarning) as record:
        samples = read_dataset(audio_folder)
    assert any(f"skipping {bad}: truncated WAV file" in str(w.message) for w in record)
    assert bad not in samples.items and len(samples) == 4


def test_mixed_images_and_audio_name_an_example_of_each(image_folder: Path, write) -> None:
    write.wav(image_folder / "dog" / "bark.wav")
    with pytest.raises(DataError, match="mixes image and audio") as info:
        read_dataset(image_folder)
    assert "bark.wav" in str(info.value) and "c0.png" in str(info.value)


def test_one_class_folder(tmp_path: Path, write) -> None:
    write.png(tmp_path / "only" / "a.png")
    write.png(tmp_path / "only" / "b.png")
    with pytest.raises(DataError, match=f"found only one class 'only' in {tmp_path}; need at least two"):
        read_dataset(tmp_path)


def test_class_folder_without_readable_files_is_named(image_folder: Path, write) -> None:
    write.corrupt_jpeg(image_folder / "bird" / "x.jpg")
    with (
        warnings.catch_warnings(),
        pytest.raises(DataError, match=f"class folder {image_folder / 'bird'} has no readable image"),
    ):
        warnings.simplefilter("ignore", SkippedItemWarning)
        read_dataset(image_folder)


def test_empty_class_folder_is_named(image_folder: Path) -> None:
    (image_folder / "bird").mkdir()
    (image_folder / "bird" / "README").write_text("todo")
    with pytest.raises(DataError, match="class folder .*bird has no readable image files"):
        read_dataset(image_folder)


def test_folder_without_media_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image or audio files found"):
        read_dataset(tmp_path)


def test_all_files_unreadable_is_an_error(tmp_path: Path, write) -> None:
    write.corrupt_jpeg(tmp_path / "a" / "x.jpg")
    write.corrupt_jpeg(tmp_path / "b" / "y.jpg")
    with warnings.catch_warnings(), pytest.raises(DataError, match="no readable image files"):
        warnings.simplefilter("ignore", SkippedItemWarning)
        read_dataset(tmp_path)


def test_flat_folder_reads_unlabelled_only_when_asked(tmp_path: Path, write) -> None:
    for i in range(3):
        write.wav(tmp_path / f"{i}_spk_{i}.wav")
    with pytest.raises(DataError, match="no class subfolders"):
        read_dataset(tmp_path)
    samples = read_dataset(tmp_path, require_labels=False)
    assert samples.labels is None and samples.modality == "audio" and len(samples) == 3


def test_top_level_files_next_to_class_folders(image_folder: Path, write) -> None:
    write.png(image_folder / "stray.png")
    with pytest.raises(DataError, match="stray.png"):
        read_dataset(image_folder)


def test_folder_of_splits_points_at_one_split(tmp_path: Path, write) -> None:
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            write.png(tmp_path / split / cls / "a.png")
    with pytest.raises(DataError, match=f"pass one split, e.g. {tmp_path / 'train'}"):
        read_dataset(tmp_path)


def test_modality_that_contradicts_the_folder(image_folder: Path) -> None:
    with pytest.raises(DataError, match="holds image files .* but modality 'audio'"):
        read_dataset(image_folder, modality="audio")
    with pytest.raises(DataError, match="not text"):
        read_dataset(image_folder, modality="text")
    assert read_dataset(image_folder, modality="image").modality == "image"


def test_bad_options(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match="unknown modality 'video'"):
        read_dataset(image_folder, modality="video")
    with pytest.raises(ConfigError, match="on_error"):
        read_dataset(image_folder, on_error="ignore")
    with pytest.raises(ConfigError, match="text_column applies to CSV"):
        read_dataset(image_folder, text_column="text")


def test_missing_path_and_single_files(tmp_path: Path, write) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        read_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="single image file"):
        read_dataset(write.png(tmp_path / "one.png"))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        read_dataset(tmp_path / "data.xlsx")


def test_subset_keeps_alignment_and_drops_the_skip_list(image_folder: Path) -> None:
    samples = read_dataset(image_folder)
    samples.skipped.append(("x", "y"))
    part = samples.subset([5, 0])
    assert isinstance(part, Samples)
    assert part.labels == ["dog", "cat"]
    assert part.items == [samples.items[5], samples.items[0]]
    assert part.origins == [samples.origins[5], samples.origins[0]]
    assert part.skipped == []
    mask = np.array([True, False, False, False, False, True])
    assert samples.subset(mask).items == [samples.items[0], samples.items[5]]
