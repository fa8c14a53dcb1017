"""Object detection: labelled boxes per image, a torchvision detector on the backbone's feature maps, mAP.

A sample is an image and its label the image's boxes (``data.boxes``: a JSON list of ``[xmin, ymin,
xmax, ymax, label]`` in pixels), read from COCO JSON, a Pascal VOC folder or a table. The head is a
torchvision detector with a feature pyramid on the backbone's multi-scale maps
(``tasks.detectors``). Images larger than ``tile_size`` are cut into overlapping tiles for training
and prediction, and the tiles' detections merged by NMS (``tasks.tiling``). The validation score is
mAP@0.5 on the validation tiles; metrics are mAP@0.5 and mAP@[.5:.95], overall and per class
(torchmetrics' ``MeanAveragePrecision``, COCO's definition).

Settings (``TransferEstimator(task_params=...)``, stored with the run): ``detector`` (``faster_rcnn``,
``fcos``, ``retinanet``), ``tile_size``, ``overlap``, ``nms_iou`` (merging tiles), ``score_threshold``
(the boxes ``predict`` shows).

Example:
    >>> est = TransferEstimator("efficientnet_lite0", "finetune", task="detection")  # doctest: +SKIP
    >>> est.fit(read_boxes("trees/annotations.csv")).predict(["aerial.png"])  # doctest: +SKIP
    [[{'label': 'Tree', 'score': 0.91, 'box': [681.2, 369.0, 699.5, 386.1]}, ...]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from transferkit.data.boxes import check_boxes, decode_boxes, encode_boxes, read_boxes
from transferkit.errors import ConfigError, DataError
from transferkit.tasks.base import TASKS, ProbeFit, Task, label_place
from transferkit.tasks.detectors import DEFAULT_DETECTOR, DETECTORS, DetectionHead, DetectorSettings

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.heads import TransferModel

# detections per image that mAP ranks (COCO's default of 100 would cap the recall on a large image)
MAX_DETECTIONS = 10_000
# upscale: the detector enlarges each tile by this factor (small objects reach the deeper, stronger feature maps);
# 1.5 was chosen over 1 and 2 on the validation part of the trees' training area (benchmarks/RESULTS.md)
SETTINGS = {"detector": DEFAULT_DETECTOR, "tile_size": 320, "overlap": 0.25, "nms_iou": 0.5, "score_threshold": 0.3,
            "upscale": 1.5}


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@TASKS.register("detection", description="labelled boxes per image: a torchvision detector (Faster R-CNN, FCOS, "
                "RetinaNet) with an FPN on feature maps, tiles for large images, mAP@0.5 and mAP@[.5:.95]")
class Detection(Task):
    """Targets are, per image, its boxes and their class indices from 1 (0 is torchvision's background)."""

    output = "feature_maps"
    score_name = "map_50"
    probabilistic = False
    # fit without --strategy: the recipe of benchmarks/detect_trees.py (all layers, BatchNorm statistics kept)
    default_fit = MappingProxyType({"strategy": "finetune", "batch_size": 4, "epochs": 10})

    def __init__(self, classes: Sequence[str] | None = None) -> None:
        self.classes: list[str] = list(classes or [])
        self.settings: dict[str, Any] = dict(SETTINGS)

    # -- inputs -----------------------------------------------------------------------------------
    def read_data(self, path: Path) -> Samples:
        """Images and boxes from COCO JSON, a Pascal VOC folder or an ``image_path,xmin,...,label`` table.

        Raises:
            DataError: another kind of file; a missing image, a box outside its image or degenerate (named).
        """
        return read_boxes(path)

    def prepare_labels(self, y: Any) -> Any:
        if y is None:
            return None
        return [value if isinstance(value, str) else encode_boxes(value) for value in y]

    def samples(self, X: Any, y: Any = None, *, modality: str | None = None) -> Samples:
        """Images (paths, PIL images or arrays) with, per image, its boxes ``[(xmin, ymin, xmax, ymax, label), ...]``.

        Raises:
            DataError: as ``read_data``, naming ``X[i]``.
        """
        from transferkit.data import Samples, load_image

        items = list(X)
        labels = self.prepare_labels(y)
        origins = [str(x) if isinstance(x, str | Path) else f"X[{i}]" for i, x in enumerate(items)]
        if labels is not None:
            if len(labels) != len(items):
                raise DataError(f"{len(items)} images but {len(labels)} box lists")
            for origin, item, label in zip(origins, items, labels, strict=True):
                boxes = decode_boxes(label)
                check_boxes(Path(origin), boxes, [f"{origin} box {i + 1}" for i in range(len(boxes))], where=origin,
                            size=load_image(item).size)
        return Samples(items=items, labels=labels, modality="image", origins=origins)

    def _dataset(self, samples: Samples, targets: Sequence[Any] | None, *, train: bool) -> Any:
        from transferkit.data import load_image
        from transferkit.tasks.tiling import TileDataset

        return TileDataset([load_image(item) for item in samples.items], targets, size=self.settings["tile_size"],
                           overlap=self.settings["overlap"], train=train)

    def make_loader(self, samples: Samples, backbone: Backbone, targets: Sequence[Any] | None, *, train: bool,
                    batch_size: int, seed: int = 0) -> DataLoader:
        """Batches of tiles (``tasks.tiling``); training tiles move and are augmented with their boxes."""
        from transferkit.tasks.tiling import tile_loader

        return tile_loader(self._dataset(samples, targets, train=train), batch_size=batch_size, seed=seed)

    def probe_data(self, backbone: Backbone, samples: Samples, targets: Sequence[Any], *, batch_size: int,
                   use_cache: bool, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("detection has no linear probe: a detector trains on the loop; use --strategy head_only "
                          "(backbone frozen), partial or finetune")

    def predict_outputs(self, model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                        progress: bool = False) -> np.ndarray:
        """Per image ``{"boxes" (M, 4), "scores" (M,), "labels" (M,)}`` in its pixels, its tiles' detections
        merged by NMS."""
        from transferkit.tasks.tiling import merge_detections

        self.check_fitted()
        dataset = self._dataset(samples, None, train=False)
        found: list[list[Any]] = [[] for _ in samples.items]
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                tiles = range(start, min(start + batch_size, len(dataset)))
                detections = model(images=[dataset[t][0] for t in tiles])
                for tile, detected in zip(tiles, detections, strict=True):
                    found[dataset.windows[tile].index].append((dataset.windows[tile], detected))
        return _objects([merge_detections(f, iou=self.settings["nms_iou"]) for f in found])

    # -- targets ----------------------------------------------------------------------------------
    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Detection:
        """The sorted classes of all training boxes.

        Raises:
            DataError: no box at all.
        """
        classes = sorted({box[4] for label in labels for box in decode_boxes(label)})
        if not classes:
            raise DataError("the training images hold no boxes; detection needs at least one labelled box")
        self.classes = classes
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        """Per image ``{"boxes": [[x0, y0, x1, y1], ...], "labels": [k, ...]}``, ``k`` the class index + 1.

        Raises:
            DataError: a class not seen in training (naming the image).
        """
        self.check_fitted()
        index = {name: i + 1 for i, name in enumerate(self.classes)}
        encoded = []
        for number, label in enumerate(labels):
            boxes = decode_boxes(label)
            unknown = sorted({b[4] for b in boxes} - set(index))
            if unknown:
                raise DataError(f"{label_place(source, origins, number)}: classes {unknown} were not seen in "
                                f"training (known: {self.classes})")
            encoded.append({"boxes": [list(b[:4]) for b in boxes], "labels": [index[b[4]] for b in boxes]})
        return _objects(encoded)

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def state(self) -> dict[str, Any]:
        return {"classes": list(self.classes), **self.settings}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classes = [str(c) for c in state.get("classes", [])]
        self.configure({k: v for k, v in state.items() if k != "classes"})

    def configure(self, settings: dict[str, Any]) -> Detection:
        """``detector``, ``tile_size``, ``overlap``, ``nms_iou``, ``score_threshold``, ``upscale`` (``SETTINGS``).

        Raises:
            ConfigError: an unknown setting or detector, or a value out of range.
        """
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"unknown detection settings {unknown}; known: {sorted(SETTINGS)}")
        try:
            self.settings.update({k: type(SETTINGS[k])(v) for k, v in settings.items()})
        except ValueError as exc:
            raise ConfigError(f"detection settings {settings}: {exc}") from exc
        DETECTORS.get(self.settings["detector"])  # an unknown detector fails now
        if self.settings["tile_size"] < 32 or not 0 <= self.settings["overlap"] < 0.9:
            raise ConfigError(f"tile_size must be at least 32 and overlap in [0, 0.9), not "
                              f"{self.settings['tile_size']} and {self.settings['overlap']}")
        if not 0.25 <= self.settings["upscale"] <= 4:
            raise ConfigError(f"upscale must be between 0.25 and 4, not {self.settings['upscale']}")
        return self

    # -- model ------------------------------------------------------------------------------------
    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        raise ConfigError("a detection head sits on the backbone's feature maps; build it with head_for(backbone)")

    def head_for(self, backbone: Backbone, dropout: float = 0.0) -> nn.Module:
        """A torchvision detector with an FPN on ``backbone``'s feature maps (``tasks.detectors``)."""
        self.check_fitted()
        preprocessing = backbone.preprocessing  # type: ignore[attr-defined]  # an image backbone's
        side = round(self.settings["tile_size"] * self.settings["upscale"])
        settings = DetectorSettings(num_classes=len(self.classes) + 1, image_size=side,
                                    mean=preprocessing.mean, std=preprocessing.std)
        return DetectionHead(backbone, self.settings["detector"], settings)

    def loss(self, outputs: Any, targets: Any, *, reduction: str = "mean") -> torch.Tensor:
        """The sum of the detector's loss terms in training; evaluation-mode outputs (detections) carry none: 0."""
        if isinstance(outputs, dict):
            return torch.stack([value for value in outputs.values()]).sum()
        return torch.zeros(())

    def join_batches(self, outputs: list[Any], targets: list[Any]) -> tuple[Any, Any]:
        return [o for batch in outputs for o in batch], [t for batch in targets for t in batch]

    def score(self, outputs: Any, targets: Any) -> float:
        """mAP@0.5 of the validation tiles' detections."""
        return mean_ap(outputs, targets)["map_50"]

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        raise ConfigError("detection has no linear probe; use --strategy head_only, partial or finetune")

    # -- predictions ------------------------------------------------------------------------------
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def boxes_of(self, scores: dict[str, np.ndarray], *, threshold: float | None = None) -> list[dict[str, Any]]:
        """One image's detections at or above ``threshold`` (default: the run's ``score_threshold``), best first."""
        cut = self.settings["score_threshold"] if threshold is None else threshold
        order = np.argsort(-scores["scores"])
        return [{"label": self.classes[int(scores["labels"][i]) - 1], "score": round(float(scores["scores"][i]), 4),
                 "box": [round(float(v), 1) for v in scores["boxes"][i]]} for i in order if scores["scores"][i] >= cut]

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        return _objects([self.boxes_of(s) for s in scores])

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        """mAP@0.5, mAP@[.5:.95] and mAP@0.75 over all images, and mAP@0.5 and mAP@[.5:.95] per class."""
        truth = self.encode(labels, source="evaluation data")
        targets = [{"boxes": torch.tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.tensor(t["labels"], dtype=torch.int64)} for t in truth]
        found = [{k: torch.from_numpy(np.asarray(s[k])) for k in ("boxes", "scores", "labels")} for s in scores]
        result = mean_ap(found, targets)
        per_class = {self.classes[k - 1]: row for k, row in result.pop("per_class").items()}
        return {"n": len(labels), "boxes": int(sum(len(t["labels"]) for t in truth)), **result, "per_class": per_class}

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        lines = [f"mAP@0.5 {metrics['map_50']:.3f}, mAP@[.5:.95] {metrics['map']:.3f}, mAP@0.75 "
                 f"{metrics['map_75']:.3f} on {metrics['boxes']} boxes in {metrics['n']} images"]
        lines += [f"  {name:<16} mAP@0.5 {row['map_50']:.3f}  mAP@[.5:.95] {row['map']:.3f}"
                  for name, row in sorted(metrics["per_class"].items())]
        return "\n".join(lines)

    def record(self, scores: dict[str, np.ndarray], *, top_k: int = 3) -> dict[str, Any]:
        return {"boxes": self.boxes_of(scores)}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        shown = [f"{b['label']} {b['score']:.2f} [{', '.join(f'{v:g}' for v in b['box'])}]" for b in record["boxes"]]
        return [f"{len(shown)} boxes", "; ".join(shown)]

    def draw(self, item: Any, scores: dict[str, np.ndarray] | None) -> Any:
        """``item`` (a path or PIL image) with the boxes ``predict`` shows drawn on it, as a PIL image."""
        from torchvision.transforms.v2 import functional as TF
        from torchvision.utils import draw_bounding_boxes

        from transferkit.data import load_image

        if scores is None:
            return None
        image = item
        shown = self.boxes_of(scores)
        pixels = TF.pil_to_tensor(load_image(image))
        boxes = torch.tensor([b["box"] for b in shown], dtype=torch.float32).reshape(-1, 4)
        drawn = draw_bounding_boxes(pixels, boxes, labels=[f"{b['label']} {b['score']:.2f}" for b in shown],
                                    colors="yellow", width=2)
        return TF.to_pil_image(drawn)


def mean_ap(found: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """COCO's mAP@[.5:.95], mAP@0.5 and mAP@0.75, overall and (the first two) per class id, counting up to
    ``MAX_DETECTIONS`` detections per image.

    Read off the precision table of torchmetrics' ``MeanAveragePrecision`` (pycocotools): COCO's summary
    counts 100 detections per image for mAP@[.5:.95] whatever is asked, which caps the recall on an image
    of hundreds of objects.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", extended_summary=True,
                                  max_detection_thresholds=[1, 10, MAX_DETECTIONS])
    metric.update([{k: v.detach().cpu() for k, v in f.items()} for f in found],
                  [{k: torch.as_tensor(v).detach().cpu() for k, v in t.items()} for t in targets])
    result = metric.compute()
    precision = result["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, classes): all areas
    thresholds = np.asarray(metric.iou_thresholds)
    at_50, at_75 = (int(np.argmin(np.abs(thresholds - t))) for t in (0.5, 0.75))

    def average(values: torch.Tensor) -> float:
        kept = values[values > -1]
        return float(kept.mean()) if kept.numel() else 0.0

    classes = [int(c) for c in torch.atleast_1d(result["classes"])]
    return {"map_50": average(precision[at_50]), "map": average(precision), "map_75": average(precision[at_75]),
            "per_class": {c: {"map_50": average(precision[at_50, :, k]), "map": average(precision[:, :, k])}
                          for k, c in enumerate(classes)}}
