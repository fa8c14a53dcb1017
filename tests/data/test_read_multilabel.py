"""Several labels per sample: ``a|b`` cells, JSONL lists of names, and a file in several class folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import read_dataset
from transferkit.errors import DataError


def test_a_jsonl_list_of_names_reads_as_a_bar_separated_label(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"text": "a tale of Rome", "labels": ["travel", "history"]}, {"text": "a recipe", "labels": ["food"]}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert read_dataset(path).labels == ["history|travel", "food"]


def _image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def test_a_copied_file_in_two_class_folders_is_one_multilabel_sample(tmp_path: Path) -> None:
    first = _image(tmp_path / "cat" / "both.png", 10)
    _image(tmp_path / "cat" / "only_cat.png", 20)
    _image(tmp_path / "dog" / "only_dog.png", 30)
    (tmp_path / "dog").mkdir(exist_ok=True)
    shutil.copy(first, tmp_path / "dog" / "same_picture_other_name.png")
    assert len(read_dataset(tmp_path)) == 4  # single-label reading keeps every file
    samples = read_dataset(tmp_path, multilabel=True)
    assert dict(zip([Path(o).name for o in samples.origins], samples.labels, strict=True)) == {
        "both.png": "cat|dog", "only_cat.png": "cat", "only_dog.png": "dog"}


def test_a_class_folder_with_a_bar_in_its_name_is_refused(tmp_path: Path) -> None:
    _image(tmp_path / "cat|dog" / "a.png", 10)
    _image(tmp_path / "dog" / "b.png", 20)
    with pytest.raises(DataError, match=r"class folder 'cat\|dog' has '\|' in its name"):
        read_dataset(tmp_path, multilabel=True)
