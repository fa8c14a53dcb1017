"""Box annotations: COCO JSON, Pascal VOC folders and tables read the same boxes; every bad box, missing image
and too-small image is one error naming the annotation file and the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data.boxes import BOX_FORMATS, decode_boxes, read_boxes
from transferkit.errors import DataError

BOXES = {"a.png": [(2, 3, 20, 30, "tree"), (30, 5, 50, 25, "dead")], "b.png": [(1, 1, 9, 9, "tree")]}


def _images(folder: Path, side: int = 64) -> None:
    for name in BOXES:
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(folder / name)


def write_table(folder: Path, rows: dict[str, list[tuple]] = BOXES) -> Path:
    lines = ["image_path,xmin,ymin,xmax,ymax,label"]
    lines += [f"{name},{x0},{y0},{x1},{y1},{label}" for name, boxes in rows.items() for x0, y0, x1, y1, label in boxes]
    (folder / "boxes.csv").write_text("\n".join(lines) + "\n")
    return folder / "boxes.csv"


def write_voc(folder: Path, rows: dict[str, list[tuple]] = BOXES) -> Path:
    for name, boxes in rows.items():
        objects = "".join(f"<object><name>{label}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                          f"<ymax>{y1}</ymax></bndbox></object>" for x0, y0, x1, y1, label in boxes)
        (folder / f"{Path(name).stem}.xml").write_text(f"<annotation><filename>{name}</filename>{objects}"
                                                       "</annotation>")
    return folder


def write_coco(folder: Path, rows: dict[str, list[tuple]] = BOXES) -> Path:
    names = sorted({b[4] for boxes in rows.values() for b in boxes})
    images = [{"id": i + 1, "file_name": name} for i, name in enumerate(rows)]
    annotations = [{"id": len(images) * 100 + k, "image_id": i + 1, "category_id": names.index(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0]}
                   for i, boxes in enumerate(rows.values()) for k, (x0, y0, x1, y1, label) in enumerate(boxes)]
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    (folder / "coco.json").write_text(json.dumps(data))
    return folder / "coco.json"


WRITERS = {"table": write_table, "voc": write_voc, "coco": write_coco}


def test_every_registered_format_has_a_writer_here() -> None:
    assert set(BOX_FORMATS.names()) == set(WRITERS)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_the_three_formats_read_the_same_boxes(tmp_path: Path, kind: str) -> None:
    _images(tmp_path)
    samples = read_boxes(WRITERS[kind](tmp_path))
    read = {Path(item).name: decode_boxes(label) for item, label in zip(samples.items, samples.labels, strict=True)}
    assert read == {name: [(float(a), float(b), float(c), float(d), e) for a, b, c, d, e in boxes]
                    for name, boxes in BOXES.items()}
    assert samples.modality == "image"


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize(("box", "says"), [((20, 3, 10, 30, "tree"), "degenerate"),
                                           ((2, 3, 20, 3, "tree"), "degenerate"),
                                           ((40, 3, 70, 30, "tree"), "outside the 64x64 image")])
def test_a_bad_box_names_the_file_and_the_box(tmp_path: Path, kind: str, box: tuple, says: str) -> None:
    _images(tmp_path)
    path = WRITERS[kind](tmp_path, {"a.png": [BOXES["a.png"][0], box]})
    with pytest.raises(DataError, match=says) as error:
        read_boxes(path)
    message = str(error.value)
    assert f"box ({box[0]}, {box[1]}, {box[2]}, {box[3]}) 'tree'" in message
    assert str(path if kind != "voc" else path / "a.xml") in message and "a.png" in message


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_an_annotation_naming_a_missing_image(tmp_path: Path, kind: str) -> None:
    _images(tmp_path)
    path = WRITERS[kind](tmp_path, {**BOXES, "gone.png": [(1, 1, 5, 5, "tree")]})
    with pytest.raises(DataError, match=r"names the image .*gone\.png, which does not exist"):
        read_boxes(path)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_one_pixel_image_is_refused(tmp_path: Path, kind: str) -> None:
    _images(tmp_path)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"b\.png is 1x1 pixels; detection needs images of at least 8x8"):
        read_boxes(WRITERS[kind](tmp_path, {"b.png": []} if kind != "table" else {"b.png": [(0, 0, 1, 1, "t")]}))


def test_a_file_in_no_box_format(tmp_path: Path) -> None:
    (tmp_path / "plain.csv").write_text("text,label\nhello,a\n")
    with pytest.raises(DataError, match="not a box annotation file"):
        read_boxes(tmp_path / "plain.csv")


def test_a_non_numeric_coordinate_names_the_row(tmp_path: Path) -> None:
    _images(tmp_path)
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\na.png,1,2,x,9,tree\n")
    with pytest.raises(DataError, match=r"boxes\.csv row 2: xmax is 'x', not a number"):
        read_boxes(tmp_path / "boxes.csv")
