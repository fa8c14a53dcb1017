"""How a detection run is exported: the detector on one tile as the ONNX graph, tiles cut and merged in Python.

torchvision's detectors export one image at a time: the graph takes a tile ``image (3, H, W)``, RGB in
``[0, 1]``, any height and width, and ``score_threshold`` (a scalar: candidates scoring at or below it
are dropped before NMS; the engines feed ``tasks.detectors.MIN_SCORE``, what the run's detector uses),
and gives ``boxes (M, 4)`` in the tile's pixels, ``scores (M,)`` and ``labels (M,)`` (class indices
from 1), with the detector's own normalisation, resizing to the tile size, proposals and NMS inside.
Cutting an image into tiles and merging the tiles' boxes by NMS stay in Python
(``Detection.predict_outputs``), the same for every engine.

Two things keep the traced graph valid on every tile, not only on the traced one:

- it is traced with a threshold that keeps every candidate: traced on a tile where nothing scored above
  the run's threshold, the tracer kept the empty shapes as constants, and the graph failed on tiles with
  boxes;
- a two-stage detector's region proposals get one more, of zero size (``PaddedProposals``): on a tile
  where the proposal network proposed nothing, torchvision's ``reshape(n, -1)`` of the box decoding
  became ONNX Reshapes that fail for ``n = 0`` (torch answers no boxes). The zero-size proposal's boxes
  have zero size too and are dropped with the small boxes before NMS, so it changes no output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from transferkit.export.tasks import EXPORTABLE_TASKS, Batch, Forward, ForwardModel, GraphExport, example_items

if TYPE_CHECKING:
    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.tasks import Task

TRACE_THRESHOLD = -1.0  # below any score: the traced tile keeps every candidate


class DetectionExport(GraphExport):
    """Boxes per image: the graph is the detector on one tile (module docstring)."""

    output_axes: dict[int, str] = {0: "detections"}
    output_names = ("boxes", "scores", "labels")
    exact_shapes = False  # boxes of equal scores (an untrained detector's) may be kept either way by NMS

    def example_batches(self, backbone: Backbone) -> list[Batch]:
        """Two tiles of other heights and widths (the graph resizes any tile to the run's tile size) at the run's
        threshold."""
        from torchvision.transforms.v2 import functional as TF

        from transferkit.tasks.detectors import MIN_SCORE

        return [{"image": TF.to_dtype(TF.to_image(image), torch.float32, scale=True),
                 "score_threshold": torch.tensor(MIN_SCORE, dtype=torch.float32)}
                for image in example_items(backbone)[:2]]

    def trace_batch(self, batches: list[Batch]) -> Batch:
        """The first tile with every candidate kept (module docstring)."""
        return {**batches[0], "score_threshold": torch.tensor(TRACE_THRESHOLD, dtype=torch.float32)}

    def difference(self, got: list[np.ndarray], expected: list[np.ndarray]) -> float | None:
        """The largest difference of boxes (pixels) and scores, each detection paired one to one with the closest
        of its class (boxes of equal scores come in either order); None for other numbers of boxes."""
        return matched_difference(dict(zip(self.output_names, got, strict=True)),
                                  dict(zip(self.output_names, expected, strict=True)))

    def graph(self, model: nn.Module, names: list[str]) -> nn.Module:
        return TileGraph(model)

    def session_forward(self, session: Any) -> Forward:
        from transferkit.tasks.detectors import MIN_SCORE

        outputs = [o.name for o in session.get_outputs()]
        threshold = np.array(MIN_SCORE, dtype=np.float32)

        def forward(batch: Batch) -> list[dict[str, torch.Tensor]]:
            found = []
            for image in batch["images"]:
                arrays = session.run(None, {"image": image.numpy(), "score_threshold": threshold})
                found.append({name: torch.from_numpy(array) for name, array in zip(outputs, arrays, strict=True)})
            return found

        return forward

    def predict_outputs(self, forward: Forward, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        """Per image its merged boxes, as ``Detection.predict_outputs``."""
        return task.predict_outputs(ForwardModel(forward, backbone), samples, batch_size=batch_size)  # type: ignore[arg-type]

    def preprocessing(self, task: Task, described: dict[str, Any]) -> dict[str, Any]:
        from transferkit.tasks.detectors import MIN_SCORE

        settings = task.state()
        image = {"layout": "one tile at a time: (3, H, W), RGB, float32 in [0, 1]; the graph normalises and "
                           "resizes it to the tile size itself",
                 "tile_size": settings["tile_size"], "overlap": settings["overlap"],
                 "tiles": "overlapping windows of tile_size pixels, the last one flush with the image's edge; an "
                          "image no larger than a tile is one tile",
                 "merge": f"boxes shifted by their tile's offset, then class-wise NMS at IoU {settings['nms_iou']}",
                 "outputs": "boxes (M, 4) as x0, y0, x1, y1 in the tile's pixels; scores (M,); labels (M,): the "
                            "index in labels.json's names, from 1"}
        threshold = {"layout": "a float32 scalar: candidates scoring at or below it are dropped before NMS",
                     "value": MIN_SCORE, "shown": settings["score_threshold"]}
        return {**described, "inputs": ["image", "score_threshold"], "image": image, "score_threshold": threshold}

    def int8_hint(self, task: Task) -> str:
        return (f"; the {task.state()['detector']} detector is convolutions only, use task.detector=faster_rcnn "
                "(its box head is quantised) or export without --quantize")


EXPORTABLE_TASKS.register("detection", description="the detector per tile: image (3, H, W), score_threshold -> "
                          "boxes, scores, labels; tiles cut and merged by NMS around it")(DetectionExport)


def matched_difference(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> float | None:
    """The largest box (pixels) or score difference between two sets of one tile's detections, each paired one
    to one with the other's closest of the same class (``scipy.optimize.linear_sum_assignment``); None when
    their numbers differ."""
    from scipy.optimize import linear_sum_assignment

    if len(mine["scores"]) != len(theirs["scores"]):
        return None
    if len(mine["scores"]) == 0:
        return 0.0
    boxes = np.abs(mine["boxes"][:, None, :] - theirs["boxes"][None, :, :]).max(2)
    scores = np.abs(mine["scores"][:, None] - theirs["scores"][None, :])
    other_class = mine["labels"][:, None] != theirs["labels"][None, :]
    rows, columns = linear_sum_assignment(np.maximum(boxes, scores) + 1e9 * other_class)
    if other_class[rows, columns].any():
        return None
    return float(max(boxes[rows, columns].max(), scores[rows, columns].max()))


class PaddedProposals(nn.Module):
    """A region proposal network whose proposals per image end with one box of zero size at the origin."""

    def __init__(self, rpn: nn.Module) -> None:
        super().__init__()
        self.rpn = rpn

    def forward(self, images: Any, features: Any, targets: Any = None) -> tuple[list[torch.Tensor], Any]:
        proposals, losses = self.rpn(images, features, targets)
        return [torch.cat([boxes, boxes.new_zeros(1, 4)]) for boxes in proposals], losses


class TileGraph(nn.Module):
    """The detector on one tile, as ONNX sees it: ``(image, score_threshold) -> (boxes, scores, labels)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, score_threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        head: Any = self.model.head  # tasks.detectors.DetectionHead
        with exportable_detector(head.detector, score_threshold):
            found = self.model(images=[image])[0]
        return found["boxes"], found["scores"], found["labels"]


@contextmanager
def exportable_detector(detector: Any, score_threshold: torch.Tensor) -> Iterator[None]:
    """``detector`` with the graph's threshold in place of its number and, two-stage (the threshold then sits
    in its RoI heads), ``PaddedProposals``; both put back after the call."""
    two_stage = hasattr(detector, "roi_heads")
    holder = detector.roi_heads if two_stage else detector
    kept = holder.score_thresh
    holder.score_thresh = score_threshold
    if two_stage:
        detector.rpn = PaddedProposals(detector.rpn)
    try:
        yield
    finally:
        holder.score_thresh = kept
        if two_stage:
            detector.rpn = detector.rpn.rpn
