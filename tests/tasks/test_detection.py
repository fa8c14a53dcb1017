"""Object detection end to end on tiny synthetic images: tiles and their boxes, augmentation that moves the
boxes with the pixels, the NMS merge of tiles, fit / predict / evaluate / save / load, the strategies on the
one loop, and the CLI (predict --json and --draw; bad boxes leave no run directory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit
from support import assert_user_error, invoke, squares
from transferkit import TransferEstimator
from transferkit.tasks.tiling import TileDataset, boxes_in, merge_detections, tile_starts, windows_of

BACKBONE = "timm:test_efficientnet"
SETTINGS = {"tile_size": 64, "overlap": 0.25, "detector": "fcos", "score_threshold": 0.0}


def test_tiles_overlap_and_reach_the_edges() -> None:
    assert tile_starts(1000, 400, 0.25) == [0, 300, 600]
    assert tile_starts(300, 400, 0.25) == [0]
    windows = windows_of(0, 130, 64, 64, 0.25)
    assert [(w.x0, w.x1) for w in windows] == [(0, 64), (48, 112), (66, 130)] and {w.y1 for w in windows} == {64}


def test_a_box_belongs_to_a_tile_when_half_of_it_is_inside() -> None:
    window = windows_of(0, 130, 64, 64, 0.25)[1]  # x in [48, 112)
    boxes = np.array([[40, 0, 60, 10], [30, 0, 52, 10], [60, 5, 70, 15]], np.float32)
    kept, labels = boxes_in(window, boxes, np.array([1, 2, 3]))
    assert labels.tolist() == [1, 3]  # the second box has only 4 of its 22 pixels inside
    assert kept.tolist() == [[0, 0, 12, 10], [12, 5, 22, 15]]


def test_augmentation_moves_the_boxes_with_the_pixels() -> None:
    images, boxes = squares(1, side=64)
    targets = [{"boxes": [list(b[:4]) for b in boxes[0]], "labels": [1, 1]}]
    dataset = TileDataset(images, targets, size=64, overlap=0.25, train=True)
    for seed in range(6):
        pixels, target = dataset[(0, seed)]
        brightness = pixels.mean(0)
        for box in target["boxes"].round().int().tolist():
            x0, y0, x1, y1 = box
            inside = brightness[y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean()
            assert inside > brightness.mean() + 0.2, (seed, box)  # the box still frames a bright square


def test_tiles_boxes_are_merged_once_by_nms() -> None:
    left, right = windows_of(0, 130, 64, 64, 0.25)[:2]
    seen = {"boxes": torch.tensor([[50.0, 10, 60, 20]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    again = {"boxes": torch.tensor([[2.0, 10, 12, 20]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])}
    merged = merge_detections([(left, seen), (right, again)], iou=0.5)
    assert merged["boxes"].tolist() == [[50, 10, 60, 20]] and merged["scores"].tolist() == pytest.approx([0.9])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TransferEstimator, Path]:
    images, boxes = squares(8)
    est = TransferEstimator(BACKBONE, "finetune", task="detection", pretrained=False, epochs=2, batch_size=4,
                            lr=1e-3, progress=False, val_fraction=0.25, task_params=SETTINGS,
                            backbone_options={"image_size": 64})
    est.fit(images, boxes)
    run = est.save(tmp_path_factory.mktemp("runs") / "run")
    return est, run


def test_fit_predicts_boxes_and_reports_map(fitted: tuple[TransferEstimator, Path]) -> None:
    est, _ = fitted
    assert [row["epoch"] for row in est.history_] == [1, 2] and "val_map_50" in est.history_[0]
    images, boxes = squares(2, seed=5)
    found = est.predict(images)
    assert len(found) == 2 and all(set(b) == {"label", "score", "box"} for b in found[0])
    metrics = est.evaluate(images, boxes)
    assert {"map_50", "map", "map_75", "per_class"} <= set(metrics) and set(metrics["per_class"]) == {"square"}
    assert 0.0 <= metrics["map"] <= metrics["map_50"] <= 1.0


def test_a_saved_run_predicts_the_same_boxes(fitted: tuple[TransferEstimator, Path]) -> None:
    est, run = fitted
    images, _ = squares(1, seed=7)
    loaded = transferkit.load(run)
    assert loaded.task_.settings == est.task_.settings
    assert json.dumps(loaded.predict(images).tolist()) == json.dumps(est.predict(images).tolist())


def test_head_only_leaves_the_backbone_unchanged_and_trains_the_pyramid() -> None:
    images, boxes = squares(4)
    est = TransferEstimator(BACKBONE, "head_only", task="detection", pretrained=False, epochs=1, batch_size=4,
                            progress=False, val_fraction=0.0, task_params=SETTINGS, backbone_options={"image_size": 64})
    torch.manual_seed(0)
    from transferkit.backbones import BackboneSpec
    from transferkit.model import build_model
    from transferkit.tasks import make_task

    task = make_task("detection").configure(SETTINGS).fit_targets(
        [json.dumps([list(b) for b in found]) for found in boxes])
    reference = build_model(BackboneSpec(BACKBONE, pretrained=False, options={"image_size": 64}), task)
    est.fit(images, boxes)
    trained = est.model_
    for (name, before), after in zip(reference.backbone.state_dict().items(), trained.backbone.state_dict().values(),
                                     strict=True):
        assert torch.equal(before, after), name  # weights and BatchNorm statistics
    fpn = "detector.backbone.fpn.inner_blocks.0.0.weight"
    assert not torch.equal(reference.head.state_dict()[fpn], trained.head.state_dict()[fpn])
    assert est.backbone_trained_ is False


def test_cli_fit_predict_json_and_draw(tmp_path: Path) -> None:
    images, boxes = squares(4)
    lines = ["image_path,xmin,ymin,xmax,ymax,label"]
    for index, (image, found) in enumerate(zip(images, boxes, strict=True)):
        image.save(tmp_path / f"{index}.png")
        lines += [f"{index}.png,{x0},{y0},{x1},{y1},{label}" for x0, y0, x1, y1, label in found]
    (tmp_path / "boxes.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    fitted = invoke("fit", tmp_path / "boxes.csv", "--out", run, "--task", "detection", "--backbone", BACKBONE,
                    "--from-scratch", "--epochs", "1",  # no --strategy: the task's default_fit (finetune)
                    "--image-size", "64", "--param", "task.tile_size=64", "--param", "task.detector=fcos",
                    "--param", "task.score_threshold=0")
    assert fitted.exit_code == 0, fitted.output
    assert json.loads((run / "transferkit.json").read_text())["strategy"] == "finetune"
    printed = invoke("predict", run, tmp_path / "0.png", "--json", "--draw", tmp_path / "drawn")
    assert printed.exit_code == 0, printed.output
    record = json.loads(printed.stdout.strip().splitlines()[-1])
    assert record["input"].endswith("0.png") and all(set(b) == {"label", "score", "box"} for b in record["boxes"])
    drawn = Image.open(tmp_path / "drawn" / "0.png")
    assert drawn.size == images[0].size and np.asarray(drawn).tobytes() != np.asarray(images[0]).tobytes()


def test_cli_a_degenerate_box_is_one_error_and_no_run_directory(tmp_path: Path) -> None:
    images, _ = squares(1)
    images[0].save(tmp_path / "0.png")
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\n0.png,30,5,10,20,tree\n")
    result = invoke("fit", tmp_path / "boxes.csv", "--out", tmp_path / "run", "--task", "detection", "--backbone",
                    BACKBONE, "--from-scratch", "--strategy", "finetune")
    assert_user_error(result, "boxes.csv row 2", "box (30, 5, 10, 20) 'tree'", "degenerate")
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_partial_trains_only_the_last_groups_of_the_backbone() -> None:
    images, boxes = squares(4)
    est = TransferEstimator(BACKBONE, "partial", task="detection", pretrained=False, epochs=1, batch_size=4,
                            progress=False, val_fraction=0.0, task_params=SETTINGS, freeze_bn=True,
                            strategy_params={"train_last_k": 2}, backbone_options={"image_size": 64})
    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    reference = create_backbone(BACKBONE, pretrained=False, image_size=64)
    est.fit(images, boxes)
    groups = est.model_.backbone.layer_groups()
    before = dict(reference.named_parameters())
    names = {id(p): n for n, p in est.model_.backbone.named_parameters()}
    first = [names[id(p)] for p in groups[0][1].parameters()]
    last = [names[id(p)] for _, group in groups[-2:] for p in group.parameters()]
    trained = dict(est.model_.backbone.named_parameters())
    assert all(torch.equal(before[n], trained[n]) for n in first)  # the input side stayed frozen
    assert any(not torch.equal(before[n], trained[n]) for n in last)  # the last groups trained


def test_upscale_enlarges_each_tile_inside_the_detector_and_is_checked() -> None:
    from transferkit.backbones import create_backbone
    from transferkit.errors import ConfigError
    from transferkit.tasks import make_task

    _, boxes = squares(2)
    task = make_task("detection").configure({**SETTINGS, "upscale": 2.0}).fit_targets(
        [json.dumps([list(b) for b in found]) for found in boxes])
    head = task.head_for(create_backbone(BACKBONE, pretrained=False, image_size=64))
    resize = head.detector.transform
    assert resize.min_size == (128,) and resize.max_size == 128
    with pytest.raises(ConfigError, match="upscale must be between 0.25 and 4, not 10"):
        make_task("detection").configure({"upscale": 10})
