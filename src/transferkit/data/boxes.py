"""Reading object-detection data: images with labelled boxes, from COCO JSON, Pascal VOC XML or a table.

Each format is one registered ``BoxFormat`` (``BOX_FORMATS``) that recognises its files and reads them
into ``Samples``: one image file per item and, as its label, its boxes as a JSON list of
``[xmin, ymin, xmax, ymax, label]`` in pixels (``encode_boxes``). An image without boxes is a sample
with ``[]``. Every box is checked against its image: a box outside the image, a degenerate box
(``xmax <= xmin``), an annotation naming a missing image, and an image too small to detect in each
raise one ``DataError`` naming the annotation file, the image and the box.

Example:
    >>> samples = read_boxes("trees/annotations.csv")  # doctest: +SKIP
    >>> decode_boxes(samples.labels[0])[:1]  # doctest: +SKIP
    [(681.0, 369.0, 699.0, 386.0, 'Tree')]
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transferkit.data.samples import IMAGE_EXTENSIONS, Samples
from transferkit.errors import DataError
from transferkit.registry import Registry
from transferkit.safety import protect_input

Box = tuple[float, float, float, float, str]
# what a format reads: image paths, their boxes, where each box was read, and where each image was named
Annotations = tuple[list[Path], list[list[Box]], list[list[str]], list[str]]
# the smallest image side a detector is trained or run on
MIN_IMAGE_SIDE = 8
TABLE_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def encode_boxes(boxes: Sequence[Sequence[float | str]]) -> str:
    """Boxes ``[(xmin, ymin, xmax, ymax, label), ...]`` as the label string of one sample."""
    return json.dumps([[float(b[0]), float(b[1]), float(b[2]), float(b[3]), str(b[4])] for b in boxes])


def decode_boxes(label: str) -> list[Box]:
    """The boxes of one sample's label string (``encode_boxes``).

    Raises:
        DataError: a label that is not such a list.
    """
    try:
        rows = json.loads(label)
        return [(float(r[0]), float(r[1]), float(r[2]), float(r[3]), str(r[4])) for r in rows]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise DataError(f"a detection label must be a JSON list of [xmin, ymin, xmax, ymax, label], not "
                        f"{label[:80]!r}") from exc


@dataclass(frozen=True)
class BoxFormat:
    """One registered annotation format: ``detects(path)`` says whether a file or folder is in it,
    ``read(path)`` returns its ``Annotations``."""

    name: str
    detects: Callable[[Path], bool]
    read: Callable[[Path], Annotations]
    description: str


def _make_format(name: str, target: Callable[[Path], Annotations], *,
                 detects: Callable[[Path], bool], description: str) -> BoxFormat:
    return BoxFormat(name, detects, target, description)


BOX_FORMATS: Registry[BoxFormat] = Registry("box format", _make_format)


def read_boxes(path: str | Path) -> Samples:
    """Images and their boxes from a COCO JSON file, a Pascal VOC folder or an
    ``image_path,xmin,ymin,xmax,ymax,label`` table, checked box by box.

    Raises:
        DataError: a file in none of these formats, a malformed file, a missing image, an image smaller
            than ``MIN_IMAGE_SIDE``, or a box outside its image or degenerate (each naming the file and the box).
    """
    p = Path(path).expanduser()
    protect_input(p)
    if not p.exists():
        raise DataError(f"no such file or folder: {p}")
    found = [entry for entry in BOX_FORMATS.entries() if entry.detects(p)]
    if not found:
        raise DataError(f"{p}: not a box annotation file; detection reads a COCO JSON file, a Pascal VOC folder of "
                        f"XML files, or a CSV table with the columns {','.join(TABLE_COLUMNS)}")
    images, boxes, places, named = found[0].read(p)
    if not images:
        raise DataError(f"{p}: no annotated images")
    for image, image_boxes, image_places, where in zip(images, boxes, places, named, strict=True):
        check_boxes(image, image_boxes, image_places, where=where)
    return Samples(items=list(images), labels=[encode_boxes(b) for b in boxes], modality="image",
                   origins=[str(i) for i in images])


def image_size(image: Path, where: str) -> tuple[int, int]:
    """``(width, height)`` of an image file as it is decoded (upright).

    Raises:
        DataError: a missing or unreadable image (named with ``where``, the annotation naming it).
    """
    from transferkit.data.decode import load_image

    if not image.is_file():
        raise DataError(f"{where}: names the image {image}, which does not exist")
    try:
        return load_image(image).size
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def check_boxes(image: Path, boxes: Sequence[Box], places: Sequence[str], *, where: str,
                size: tuple[int, int] | None = None) -> None:
    """Refuse, in one line naming the annotation and the box, an image too small to detect in, a
    degenerate box or a box outside its image.

    Raises:
        DataError: as above.
    """
    width, height = size or image_size(image, where)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DataError(f"{where}: image {image} is {width}x{height} pixels; detection needs images of at least "
                        f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    for box, place in zip(boxes, places, strict=True):
        xmin, ymin, xmax, ymax, label = box
        shown = f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) {label!r}"
        if not xmax > xmin or not ymax > ymin:
            raise DataError(f"{place}: {shown} of {image.name} is degenerate (needs xmin < xmax and ymin < ymax)")
        if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
            raise DataError(f"{place}: {shown} lies outside the {width}x{height} image {image.name}")
        if not label.strip():
            raise DataError(f"{place}: {shown} of {image.name} has no label")


def _number(value: str | None, where: str, name: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {name} is {value!r}, not a number") from None


def _grouped(rows: list[tuple[Path, Box | None, str]]) -> Annotations:
    """Per image in first-seen order, its boxes and where each was read (``None`` boxes: an image without any,
    named by where it was listed)."""
    order: dict[Path, tuple[list[Box], list[str], str]] = {}
    for image, box, where in rows:
        boxes, places, _ = order.setdefault(image, ([], [], where))
        if box is not None:
            boxes.append(box)
            places.append(where)
    images = list(order)
    return images, [order[i][0] for i in images], [order[i][1] for i in images], [order[i][2] for i in images]


# -- tables ----------------------------------------------------------------------------------------
def _is_box_table(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() not in (".csv", ".tsv"):
        return False
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), [])
    return set(TABLE_COLUMNS) <= {h.strip().lower() for h in header}


@BOX_FORMATS.register("table", detects=_is_box_table, description="a CSV/TSV table image_path,xmin,ymin,xmax,ymax,"
                      "label, one row per box, image paths relative to the table")
def read_box_table(path: Path) -> Annotations:
    rows: list[tuple[Path, Box | None, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames or []]
        for number, row in enumerate(reader, start=2):
            where = f"{path} row {number}"
            name = (row.get("image_path") or "").strip()
            if not name:
                raise DataError(f"{where}: no image_path")
            image = path.parent / name
            coords = [(row.get(k) or "").strip() for k in TABLE_COLUMNS[1:5]]
            if not any(coords) and not (row.get("label") or "").strip():
                rows.append((image, None, where))  # an image without boxes
                continue
            values = [_number(v, where, k) for v, k in zip(coords, TABLE_COLUMNS[1:5], strict=True)]
            rows.append((image, (*values, (row.get("label") or "").strip()), where))  # type: ignore[arg-type]
    return _grouped(rows)


# -- Pascal VOC ------------------------------------------------------------------------------------
def _is_voc_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.xml"))


def _voc_image(xml: Path, root: ET.Element) -> Path:
    """The image an XML file annotates: its ``filename`` next to it (or in ``../JPEGImages``), else an image
    file with the XML file's stem."""
    name = (root.findtext("filename") or "").strip()
    candidates = [xml.parent / name, xml.parent.parent / "JPEGImages" / name] if name else []
    candidates += [xml.with_suffix(ext) for ext in sorted(IMAGE_EXTENSIONS)]
    return next((c for c in candidates if c.is_file()), candidates[0])


@BOX_FORMATS.register("voc", detects=_is_voc_folder, description="a Pascal VOC folder: one XML file per image "
                      "(<filename>, <object><name>, <bndbox>)")
def read_voc_folder(path: Path) -> Annotations:
    rows: list[tuple[Path, Box | None, str]] = []
    for xml in sorted(path.glob("*.xml")):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{xml}: not valid XML ({exc})") from exc
        if root.tag != "annotation":
            continue
        image = _voc_image(xml, root)
        objects = root.findall("object")
        if not objects:
            rows.append((image, None, str(xml)))
        for number, obj in enumerate(objects, start=1):
            where = f"{xml} object {number}"
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise DataError(f"{where}: no <bndbox>")
            values = [_number(bndbox.findtext(k), where, k) for k in TABLE_COLUMNS[1:5]]
            rows.append((image, (*values, (obj.findtext("name") or "").strip()), where))  # type: ignore[arg-type]
    return _grouped(rows)


# -- COCO ------------------------------------------------------------------------------------------
def _is_coco(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    return b'"annotations"' in head or b'"images"' in head


@BOX_FORMATS.register("coco", detects=_is_coco, description="a COCO JSON file (images, annotations with bbox "
                      "[x, y, width, height], categories); image files relative to it")
def read_coco(path: Path) -> Annotations:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(i["id"]): str(i["file_name"]) for i in data["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        annotations = list(data["annotations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a COCO annotation file (needs images with id and file_name, and "
                        f"annotations): {exc}") from exc
    rows: list[tuple[Path, Box | None, str]] = [(path.parent / name, None, f"{path} image {key}")
                                               for key, name in images.items()]
    for number, ann in enumerate(annotations):
        where = f"{path} annotation {ann.get('id', number)}"
        if ann.get("image_id") not in images:
            raise DataError(f"{where}: names image_id {ann.get('image_id')!r}, which is not among the file's images")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(f"{where}: bbox is {bbox!r}; expected [x, y, width, height]")
        x, y, w, h = (_number(v, where, "bbox") for v in bbox)
        label = categories.get(ann.get("category_id"), str(ann.get("category_id", "")))
        rows.append((path.parent / images[ann["image_id"]], (x, y, x + w, y + h, label), where))
    return _grouped(rows)
