"""The per-task graphs of ``export.tasks`` beyond the pooled and word ones (tests/export/test_onnx.py): detection
(the detector exported per tile, the tiles cut and merged in Python around it) and verification, each
predicting through onnxruntime what it predicts on PyTorch; int8 for detectors; a detection run served on
the onnx engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from support import identity_images, squares
from transferkit import TransferEstimator
from transferkit.data import Samples, samples_from_arrays
from transferkit.errors import ConfigError
from transferkit.export import export_onnx, load_engine

TINY = {"backbone": "timm:test_efficientnet", "pretrained": False, "progress": False,
        "backbone_options": {"image_size": 64}}
TILES = {"tile_size": 64, "overlap": 0.25, "score_threshold": 0.0}
BOX_PIXELS = 1e-3  # boxes are in pixels of images up to 110 px: float32 rounding of the regressed offsets


def _fit(root: Path, name: str, detector: str, strategy: str, images: int, *, quantize: bool) -> Path:
    import torch

    torch.manual_seed(0)
    x, y = squares(images, side=64 if images == 1 else 96)
    est = TransferEstimator(strategy=strategy, task="detection", epochs=1, batch_size=4, lr=1e-3, val_fraction=0.0,
                            task_params={**TILES, "detector": detector}, **TINY).fit(x, y)
    run = est.save(root / name)
    export_onnx(run, quantize=quantize)
    return run


@pytest.fixture(scope="module")
def detection_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``fcos``: fine-tuned one epoch on four 96 px images of squares (several 64 px tiles each), exported;
    ``faster_rcnn``: its box head trained one epoch on one image, exported with --quantize."""
    root = tmp_path_factory.mktemp("detection")
    return {"fcos": _fit(root, "fcos", "fcos", "finetune", 4, quantize=False),
            "faster_rcnn": _fit(root, "faster_rcnn", "faster_rcnn", "head_only", 1, quantize=True)}


def _images(count: int, side: int) -> Samples:
    images, _ = squares(count, side=side, seed=5)
    return Samples(items=images, labels=None, modality="image", origins=[f"X[{i}]" for i in range(count)])


def _matched_difference(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> tuple[float, float]:
    """The largest box and score differences between two engines' detections of one image, each detection
    paired one to one with the other engine's closest of its class (an untrained detector's boxes of equal
    scores, or equal clipped boxes, may come in either order)."""
    from scipy.optimize import linear_sum_assignment

    assert len(mine["scores"]) == len(theirs["scores"]), (len(mine["scores"]), len(theirs["scores"]))
    if len(mine["scores"]) == 0:
        return 0.0, 0.0
    boxes = np.abs(mine["boxes"][:, None, :] - theirs["boxes"][None, :, :]).max(2)
    scores = np.abs(mine["scores"][:, None] - theirs["scores"][None, :])
    other_class = mine["labels"][:, None] != theirs["labels"][None, :]
    rows, columns = linear_sum_assignment(np.maximum(boxes, 1e3 * scores) + 1e9 * other_class)
    assert not other_class[rows, columns].any(), "a box paired with a box of another class"
    return float(boxes[rows, columns].max()), float(scores[rows, columns].max())


def test_detection_on_onnx_finds_the_boxes_pytorch_finds(detection_runs: dict[str, Path]) -> None:
    run = detection_runs["fcos"]
    samples = _images(3, side=110)  # 110 px: 4 tiles an image, edge tiles narrower than 64 px, merged by NMS
    found = {engine: load_engine(run, engine).predict_scores(samples, batch_size=3) for engine in ("torch", "onnx")}
    boxes = [_matched_difference(a, b) for a, b in zip(found["torch"], found["onnx"], strict=True)]
    box_diff, score_diff = max(b for b, _ in boxes), max(s for _, s in boxes)
    count = sum(len(s["scores"]) for s in found["torch"])
    message = f"max |box_onnx - box_torch| = {box_diff:.2e} px, max |score diff| = {score_diff:.2e} over {count} boxes"
    print(message)
    assert count > 0, "no box to compare"
    assert score_diff < 1e-4 and box_diff < BOX_PIXELS, message
    report = json.loads((run / "onnx" / "export.json").read_text())
    assert report["max_abs_diff_outputs"] < 1e-3 and set(report["outputs"]) == {"boxes", "scores", "labels"}


def test_the_detection_export_is_one_tile_of_any_size(detection_runs: dict[str, Path]) -> None:
    import onnx

    folder = detection_runs["fcos"] / "onnx"
    graph = onnx.load(str(folder / "model.onnx")).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.input, *graph.output]}
    assert shapes["image"] == [3, "image_1", "image_2"] and shapes["score_threshold"] == []
    assert shapes["boxes"] == ["detections", 4] and shapes["scores"] == shapes["labels"] == ["detections"]
    preprocessing = json.loads((folder / "preprocessing.json").read_text())
    assert preprocessing["inputs"] == ["image", "score_threshold"] and preprocessing["image"]["tile_size"] == 64
    assert json.loads((folder / "labels.json").read_text())["names"] == ["square"]


@pytest.mark.parametrize("detector", ["fcos", "faster_rcnn"])
def test_the_graph_answers_tiles_without_boxes_and_its_threshold(detection_runs: dict[str, Path],
                                                                detector: str) -> None:
    """Traced with every candidate kept, the graph still answers a tile where nothing passes the threshold (no
    boxes), and the threshold is the caller's: a lower one keeps more boxes. A tile of NaNs leaves a two-stage
    detector without region proposals (torch: no boxes), which the traced graph must answer too."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(detection_runs[detector] / "onnx" / "model.onnx"))
    image = np.random.default_rng(0).random((3, 50, 70), dtype=np.float32)
    counts = {t: len(session.run(None, {"image": image, "score_threshold": np.array(t, np.float32)})[1])
              for t in (1.0, 0.05, 0.0)}
    assert counts[1.0] == 0 and counts[0.0] > 0 and counts[0.0] >= counts[0.05], counts
    nothing = session.run(None, {"image": np.full_like(image, np.nan), "score_threshold": np.array(0.05, np.float32)})
    assert [a.shape for a in nothing] == [(0, 4), (0,), (0,)]


def test_cli_predicts_the_same_boxes_on_both_engines(detection_runs: dict[str, Path], tmp_path: Path) -> None:
    from support import invoke

    images, _ = squares(1, side=80, seed=6)
    images[0].save(tmp_path / "a.png")
    printed = {engine: invoke("predict", detection_runs["fcos"], tmp_path / "a.png", "--json", "--engine", engine)
               for engine in ("torch", "onnx")}
    assert all(p.exit_code == 0 for p in printed.values()), printed["onnx"].output
    records = {engine: json.loads(p.stdout.strip().splitlines()[-1]) for engine, p in printed.items()}
    assert len(records["torch"]["boxes"]) == len(records["onnx"]["boxes"]) > 0
    assert sorted(b["label"] for b in records["torch"]["boxes"]) == sorted(b["label"] for b in records["onnx"]["boxes"])


def test_int8_detection_quantises_the_box_head_of_faster_rcnn(detection_runs: dict[str, Path]) -> None:
    import onnx

    run = detection_runs["faster_rcnn"]
    nodes = {node.op_type for node in onnx.load(str(run / "onnx" / "model.int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= nodes
    samples = _images(1, side=64)
    fp32 = load_engine(run, "onnx").predict_scores(samples)
    box_diff, score_diff = _matched_difference(load_engine(run, "torch").predict_scores(samples)[0], fp32[0])
    print(f"faster_rcnn: max |box diff| = {box_diff:.2e} px, max |score diff| = {score_diff:.2e} over "
          f"{len(fp32[0]['scores'])} boxes")
    assert score_diff < 1e-4 and box_diff < BOX_PIXELS
    int8 = load_engine(run, "onnx-int8").predict_scores(samples)[0]
    assert set(int8) == {"boxes", "scores", "labels"} and int8["boxes"].shape == (len(int8["scores"]), 4)


def test_int8_of_a_convolution_only_detector_is_refused(detection_runs: dict[str, Path]) -> None:
    """``export --quantize`` checks the traced graph before quantising (inside the staged export folder, which
    a failure removes: tests/export/test_onnx.py)."""
    from transferkit.export import onnx as onnx_export
    from transferkit.export.tasks import exportable
    from transferkit.tasks import task_from_manifest

    run = detection_runs["fcos"]
    task = task_from_manifest(json.loads((run / "transferkit.json").read_text()))
    with pytest.raises(ConfigError, match="no MatMul or Gemm node.*fcos detector is convolutions only"):
        onnx_export._check_quantizable(run / "onnx" / "model.onnx", exportable("detection"), task)
    onnx_export._check_quantizable(detection_runs["faster_rcnn"] / "onnx" / "model.onnx", exportable("detection"),
                                   task)


def test_a_detection_run_is_served_on_the_onnx_engine(detection_runs: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from transferkit.serve import ServeSettings, create_app

    images, _ = squares(1, side=64, seed=7)
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG")
    with TestClient(create_app(load_engine(detection_runs["fcos"], "onnx"), ServeSettings(max_batch=2))) as client:
        answer = client.post("/predict", files={"file": ("a.png", buffer.getvalue(), "image/png")})
        assert client.get("/metadata").json()["engine"] == "onnx"
    assert answer.status_code == 200, answer.text
    served = answer.json()["boxes"]
    samples = Samples(items=images, labels=None, modality="image", origins=["a"])
    expected = load_engine(detection_runs["fcos"], "torch").records(samples)[0]["boxes"]
    assert len(served) == len(expected) > 0
    assert np.allclose(sorted(b["score"] for b in served), sorted(b["score"] for b in expected), atol=2e-4)


def test_verification_on_onnx_gives_pytorchs_cosines(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    x, y = identity_images(range(4), 6, seed=0)
    run = TransferEstimator(task="verification", **{**TINY, "backbone_options": {"image_size": 32}}).fit(x, y).save(
        tmp_path / "run")
    export_onnx(run)
    probes, _ = identity_images(range(4), 2, seed=1)
    samples = samples_from_arrays(probes, None, modality="image")
    cosines = {engine: load_engine(run, engine).predict_scores(samples, batch_size=3) for engine in ("torch", "onnx")}
    difference = float(np.abs(cosines["torch"] - cosines["onnx"]).max())
    print(f"verification: max |cos_onnx - cos_torch| = {difference:.2e} over {cosines['torch'].size} cosines")
    assert cosines["torch"].shape == (8, 4) and difference < 1e-4, difference
    labels = {engine: [load_engine(run, engine).task.record(s)["identity"] for s in cosines[engine]]
              for engine in cosines}
    assert labels["torch"] == labels["onnx"]
