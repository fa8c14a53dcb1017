"""The detection run's report view: average precision per class and overall, and boxes drawn on the images
the detector found least of.

``rows`` keeps the task's metrics (COCO mAP@0.5, mAP@[.5:.95] and mAP@0.75, overall and per class), the
number of true boxes of each class, and per held-out image how many true boxes it holds, how many boxes the
detector shows (at the run's ``score_threshold``, what ``predict`` shows) and how many of those match a true
box (IoU at least ``MATCH_IOU``, same class, greedily by score as COCO matches). The worst images are those
of lowest recall, then lowest precision; each is stored as a JPEG of at most ``PICTURE_SIDE`` pixels with its
true and shown boxes (at most ``FOUND_DRAWN`` shown ones, the best-scored), and drawn on the page (true boxes
green, shown boxes red, dashed) and as a PNG file.

Registered in ``REPORT_VIEWS`` as ``detection`` when ``transferkit.report`` is imported.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.report.page import Figures, Section, table
from transferkit.report.views import REPORT_VIEWS, ReportView

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from transferkit.data import Samples
    from transferkit.tasks.base import Task

MATCH_IOU = 0.5
DRAWN = 4  # images drawn with their boxes
PICTURE_SIDE = 800  # pixels, longest side of a drawn image as stored
LABELLED_BOXES = 40  # above this many boxes in an image, boxes are drawn without their labels
FOUND_DRAWN = 300  # found boxes stored and drawn per image, at most (the best-scored)
TRUE_COLOUR, FOUND_COLOUR = "#1a9850", "#d73027"


def match_boxes(true_boxes: np.ndarray, true_labels: Sequence[Any], found_boxes: np.ndarray,
                found_labels: Sequence[Any], found_scores: np.ndarray, *, iou: float = MATCH_IOU) -> int:
    """How many found boxes match a true box: each found box, best score first, takes the unmatched true box
    of its class it overlaps most, if their IoU is at least ``iou`` (COCO's greedy matching at one IoU).

    Args:
        true_boxes: ``(T, 4)`` ``xmin, ymin, xmax, ymax``.
        found_boxes: ``(F, 4)`` in the same pixels, with ``found_labels`` and ``found_scores`` ``(F,)``.
    """
    import torch
    from torchvision.ops import box_iou

    if len(true_boxes) == 0 or len(found_boxes) == 0:
        return 0
    overlap = box_iou(torch.as_tensor(np.asarray(found_boxes, np.float32)),
                      torch.as_tensor(np.asarray(true_boxes, np.float32))).numpy()  # (F, T)
    overlap[np.asarray(found_labels, object)[:, None] != np.asarray(true_labels, object)[None, :]] = 0.0
    taken = np.zeros(len(true_boxes), bool)
    for f in np.argsort(-np.asarray(found_scores), kind="stable"):
        candidates = np.where(taken, -1.0, overlap[f])
        best = int(candidates.argmax())
        if candidates[best] >= iou:
            taken[best] = True
    return int(taken.sum())


def _picture(item: Any) -> tuple[str, list[int]]:
    """A JPEG data URI of the image, longest side at most ``PICTURE_SIDE``, and the image's own size."""
    from transferkit.data.decode import load_image

    image = load_image(item).convert("RGB")
    size = list(image.size)
    image.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), size


def ap_bars(per_class: Mapping[str, Mapping[str, float]], overall: Mapping[str, float]) -> Figure:
    """AP@0.5 and AP@[.5:.95] of each class, and the mean over classes (mAP) first."""
    from matplotlib.figure import Figure

    rows = {"all classes (mAP)": overall, **per_class}
    names = list(rows)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(5.0, min(0.5 * len(names) + 2.5, 16)), 3.8))
    ax = fig.subplots()
    for offset, key, label in ((-0.2, "map_50", "AP@0.5"), (0.2, "map", "AP@[.5:.95]")):
        bars = ax.bar(x + offset, [rows[n][key] for n in names], width=0.4, label=label)
        if len(names) <= 12:
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [str(n)[:20] for n in names], rotation=30 if len(names) > 3 else 0,
                  ha="right" if len(names) > 3 else "center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("average precision")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def drawn_boxes(example: Mapping[str, Any]) -> Figure:
    """One stored image with its true boxes (green) and the boxes the detector shows (red, dashed, scored)."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from PIL import Image

    width, height = example["size"]
    image = Image.open(io.BytesIO(base64.b64decode(example["picture"].split(",", 1)[1])))
    side = 6.5
    fig = Figure(figsize=(side, max(2.5, min(side * height / width, 9.0)) + 0.5))
    ax = fig.subplots()
    ax.imshow(np.asarray(image), extent=(0, width, height, 0))
    labelled = len(example["true_boxes"]) + len(example["found_boxes"]) <= LABELLED_BOXES
    for boxes, colour, style, line in ((example["found_boxes"], FOUND_COLOUR, "--", 1.2),
                                        (example["true_boxes"], TRUE_COLOUR, "-", 2.0)):  # true boxes on top
        corners = np.asarray([b[:4] for b in boxes], dtype=float).reshape(-1, 4)
        outlines = corners[:, [[0, 1], [2, 1], [2, 3], [0, 3], [0, 1]]]  # (B, 5, 2): each box's closed outline
        ax.add_collection(LineCollection(list(outlines), colors=colour, linestyles=style, linewidths=line))
        for box in boxes if labelled else []:
            text = str(box[4]) if len(box) == 5 else f"{box[4]} {box[5]:.2f}"
            ax.text(box[0], box[1] if colour == TRUE_COLOUR else box[3], text, color="white", fontsize=7,
                    va="bottom" if colour == TRUE_COLOUR else "top",
                    bbox={"facecolor": colour, "alpha": 0.7, "pad": 1, "edgecolor": "none"})
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{str(example['origin'])[-60:]}\nrecall {example['recall']:.2f}, precision "
                 f"{example['precision']:.2f} at IoU {MATCH_IOU}", fontsize=9)
    ax.legend(handles=[Line2D([], [], color=TRUE_COLOUR, label=f"true ({len(example['true_boxes'])})"),
                       Line2D([], [], color=FOUND_COLOUR, linestyle="--",
                              label=_found_words(example))],
              fontsize=7, loc="upper right", framealpha=0.8)
    return fig


def _found_words(example: Mapping[str, Any]) -> str:
    shown, found = len(example["found_boxes"]), example.get("found", len(example["found_boxes"]))
    return f"found ({found})" if shown == found else f"found (the {shown} best of {found})"


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


@REPORT_VIEWS.register("detection", description="AP@0.5 and AP@[.5:.95] per class and overall, true and found "
                       "boxes drawn on the images of lowest recall")
class DetectionView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        from transferkit.data.boxes import decode_boxes

        truth = [decode_boxes(label) for label in samples.labels or []]
        images = []
        for boxes, found in zip(truth, scores, strict=False):
            shown = task.boxes_of(found)  # type: ignore[attr-defined]  # the detection task's
            matched = match_boxes(np.array([b[:4] for b in boxes]).reshape(-1, 4), [b[4] for b in boxes],
                                  np.array([b["box"] for b in shown]).reshape(-1, 4), [b["label"] for b in shown],
                                  np.array([b["score"] for b in shown]))
            images.append({"boxes": len(boxes), "found": len(shown), "matched": matched})
        return {"metrics": task.metrics(samples.labels, scores) if samples.labels else None,
                "threshold": task.settings["score_threshold"],  # type: ignore[attr-defined]
                "class_boxes": dict(Counter(b[4] for boxes in truth for b in boxes)), "images": images}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        images = rows["images"]
        keys = [(_rate(r["matched"], r["boxes"]), _rate(r["matched"], r["found"])) for r in images]
        order = sorted(range(len(images)), key=lambda i: keys[i])
        return [i for i in order if keys[i] < (1.0, 1.0)][:DRAWN]

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        from transferkit.data.boxes import decode_boxes

        picture, size = _picture(samples.items[index])
        found = task.boxes_of(scores[index])  # type: ignore[attr-defined]
        counts = rows["images"][index]
        true_boxes = decode_boxes(samples.labels[index]) if samples.labels else []
        return {"picture": picture, "size": size, "true_boxes": [[round(v, 1) for v in b[:4]] + [b[4]]
                                                                 for b in true_boxes],
                "found_boxes": [b["box"] + [b["label"], b["score"]] for b in found[:FOUND_DRAWN]],
                "found": len(found),
                "recall": _rate(counts["matched"], counts["boxes"]),
                "precision": _rate(counts["matched"], counts["found"])}

    def map_labels(self, samples: Samples) -> list[str]:
        return []  # an image holds boxes of several classes: no one class to colour it by

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        metrics = rows.get("metrics")
        if not metrics:
            return []
        per_class, counts = metrics["per_class"], rows.get("class_boxes", {})
        body = (f"<p>mAP@0.5 <b>{metrics['map_50']:.4f}</b>, mAP@[.5:.95] <b>{metrics['map']:.4f}</b>, mAP@0.75 "
                f"{metrics['map_75']:.4f} on {metrics['boxes']} boxes in {metrics['n']} images (COCO's average "
                "precision, up to 10,000 detections per image)</p>"
                + table([["all classes (mAP)", metrics["map_50"], metrics["map"], metrics["boxes"]]]
                        + [[name, r["map_50"], r["map"], counts.get(name, 0)] for name, r in per_class.items()],
                        ["class", "AP@0.5", "AP@[.5:.95]", "true boxes"])
                + figures.draw("ap_per_class", ap_bars, per_class, metrics,
                               caption="average precision per class and over all classes"))
        images = rows.get("images", [])
        if images:
            matched = sum(r["matched"] for r in images)
            body += (f"<p>at the score threshold {rows['threshold']:g} that predict shows: recall "
                     f"{_rate(matched, sum(r['boxes'] for r in images)):.4f}, precision "
                     f"{_rate(matched, sum(r['found'] for r in images)):.4f} (IoU at least {MATCH_IOU}, same "
                     "class)</p>")
        out = [Section("Average precision", body)]
        drawn = [e for e in examples if "picture" in e]
        if drawn:
            out.append(Section("Boxes on the images found least of", (
                f"<p class='note'>lowest recall first, then lowest precision; true boxes "
                f"<span style='color:{TRUE_COLOUR}'>green</span>, boxes found at score {rows['threshold']:g} or "
                f"more <span style='color:{FOUND_COLOUR}'>red, dashed</span></p>")
                + "".join(figures.draw(f"boxes_{i + 1}", drawn_boxes, e,
                                       caption=f"{e['origin']}: recall {e['recall']:.2f}, "
                                               f"precision {e['precision']:.2f}") for i, e in enumerate(drawn))))
        return out
