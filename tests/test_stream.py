"""Streaming prediction into a CSV file: every input once, across interruptions; corrupt files skipped."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from support import blob_images, invoke
from transferkit import TransferClassifier
from transferkit.data.samples import SkippedItemWarning
from transferkit.errors import ArtifactError
from transferkit.stream import list_inputs, predict_to_csv


@pytest.fixture(scope="module")
def folder_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TransferClassifier]:
    root = tmp_path_factory.mktemp("stream")
    images, labels = blob_images(12, size=28)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / "inputs" / label).mkdir(parents=True, exist_ok=True)
        paths.append(root / "inputs" / label / f"{i:02d}.png")
        Image.fromarray(image).save(paths[-1])
    (root / "inputs" / "br" / "broken.png").write_bytes(b"not a png")
    clf = TransferClassifier(backbone="lenet", pretrained=False, progress=False).fit(paths, labels)
    return root / "inputs", clf


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def test_an_interrupted_stream_resumes_and_writes_each_row_once(folder_and_model, tmp_path: Path) -> None:
    folder, clf = folder_and_model
    source = list_inputs([str(folder)], "image")
    out = tmp_path / "predictions.csv"

    def interrupted() -> Iterator[tuple[str, Any]]:
        for n, pair in enumerate(source()):
            if n == 16:  # Ctrl-C during the fourth batch of 5: three were written, broken.png (the 13th) logged
                raise KeyboardInterrupt
            yield pair

    with pytest.raises(KeyboardInterrupt), pytest.warns(SkippedItemWarning):
        predict_to_csv(clf.model_, clf.task_, interrupted, out, batch_size=5, workers=0, progress=False)
    first = _rows(out)
    assert len(first) == 14
    with out.open("a") as f:  # and the process was killed while it wrote the next row
        f.write(first[0][0] + ",br,{\"lab")

    done = predict_to_csv(clf.model_, clf.task_, source, out, batch_size=5, workers=2, progress=False)
    rows = _rows(out)
    names = [row[0] for row in rows]
    assert len(names) == len(set(names)) == 24  # every readable image once, the cut-off row dropped
    assert done.resumed == 15 and done.written == 10 and done.skipped == 0  # broken.png was logged before
    skipped = _rows(out.with_name("predictions.csv.skipped.csv"))
    assert [Path(name).name for name, _ in skipped] == ["broken.png"]

    # the rows are the model's predictions, whichever call wrote them
    expected = dict(zip(map(str, sorted(folder.rglob("[0-9]*.png"))),
                        clf.predict(sorted(folder.rglob("[0-9]*.png"))), strict=True))
    assert {row[0]: row[1] for row in rows} == expected
    assert all(json.loads(row[2])["label"] == row[1] for row in rows)


def test_the_cli_streams_a_folder_and_refuses_to_append_to_another_file(folder_and_model, tmp_path: Path) -> None:
    folder, clf = folder_and_model
    run = clf.save(tmp_path / "run")
    out = tmp_path / "p.csv"
    result = invoke("predict", run, folder, "--out", out, "--batch-size", "8", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "wrote 24 rows" in result.stderr and "1 unreadable skipped" in result.stderr
    again = invoke("predict", run, folder, "--out", out, "--workers", "0")
    assert "wrote 0 rows" in again.stderr and len(_rows(out)) == 24

    other = tmp_path / "notes.csv"
    other.write_text("name,score\na,1\n")
    with pytest.raises(ArtifactError, match="not a transferkit predictions file"):
        predict_to_csv(clf.model_, clf.task_, list_inputs([str(folder)], "image"), other, workers=0, progress=False)
    assert other.read_text() == "name,score\na,1\n"
