from pathlib import Path

import pytest

from transferkit.data import read_dataset, read_review_folder
from transferkit.errors import DataError


def write_domain(folder: Path) -> Path:
    folder.mkdir()
    for label, words in (("positive", ["great &amp; fun", "loved it"]), ("negative", ["dull", "broke\n  at once"])):
        body = "".join(f"<review>\n<title>t</title>\n<review_text>\n{w}\n</review_text>\n</review>\n" for w in words)
        (folder / f"{label}.review").write_text(body, encoding="latin-1")
    return folder


def test_review_folder_reads_texts_labels_and_origins(tmp_path: Path) -> None:
    samples = read_dataset(write_domain(tmp_path / "books"))
    assert samples.modality == "text" and samples.classes == ["negative", "positive"]
    assert samples.items == ["dull", "broke at once", "great & fun", "loved it"]
    assert samples.origins[1].endswith("negative.review review 2")


def test_review_folder_unlabelled_and_errors(tmp_path: Path) -> None:
    folder = write_domain(tmp_path / "dvd")
    assert read_review_folder(folder, require_labels=False).labels is None
    (folder / "negative.review").write_text("<review>no text element</review>")
    with pytest.raises(DataError, match="no <review_text> elements"):
        read_review_folder(folder)
    with pytest.raises(DataError, match="no .review files"):
        read_review_folder(tmp_path)
