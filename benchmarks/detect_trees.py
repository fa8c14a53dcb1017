"""Tree-crown detection on the large aerial image of ``images/trees``, split spatially.

The 2,299 x 2,472 crop (574 boxed crowns) is cut in two by a vertical line: the left 60 % is the
training area, the right 40 % the test area, which no setting sees. The bottom quarter of the training
area is the validation part that early stopping follows. A box belongs to the area holding its centre
and is clipped to it. transferkit tiles each area itself (``tile_size`` 320, overlap 0.25).

Rows (each in its own process, for its peak memory): transferkit's ``head_only`` (frozen backbone),
``finetune`` (full, BatchNorm statistics frozen) and ``finetune`` from scratch, all Faster R-CNN + FPN
on EfficientNet-Lite0's feature maps; and the peer, side by side in the same run: the plain torchvision
detection-tutorial recipe (``FasterRCNN`` with its defaults on the same FPN over the same
EfficientNet-Lite0 weights, SGD 0.005 / momentum 0.9 / weight decay 5e-4, StepLR(3, 0.1), batch 2,
horizontal flips, 20 epochs) on the same training tiles, non-overlapping.

    nice -n 5 python benchmarks/detect_trees.py --data ../shared/data --out benchmarks/results/detect_trees.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transferkit.tasks.detection import Detection

IMAGE = "2019_YELL_2_528000_4978000_image_crop2.jpg"
SPLIT_X = 0.6  # the training area is x < 0.6 W
VAL_Y = 0.75  # its validation part is y >= 0.75 H
TILE = 320
OURS = {"detector": "faster_rcnn", "tile_size": TILE, "overlap": 0.25}
# --row key: (shown name, strategy, pretrained)
ROWS = {
    "head_only": ("frozen backbone (head_only)", "head_only", True),
    "finetune": ("fine-tuned (finetune, frozen BN)", "finetune", True),
    "scratch": ("from scratch (finetune)", "finetune", False),
}
# our rows train with the task's own recipe (default_fit), as the upscale is its SETTINGS default
EPOCHS = Detection.default_fit["epochs"]
BATCH_SIZE = Detection.default_fit["batch_size"]
PEER_EPOCHS = 20
PATIENCE = 3


def areas(data: Path) -> dict[str, tuple[Image.Image, list[tuple[float, float, float, float, str]]]]:
    """The training, validation and test areas of the large image, each with its boxes in its pixels."""
    from transferkit.data.boxes import decode_boxes, read_boxes

    samples = read_boxes(data / "images" / "trees" / "annotations.csv")
    index = [Path(o).name for o in samples.origins].index(IMAGE)
    image = Image.open(samples.items[index]).convert("RGB")
    boxes = decode_boxes(samples.labels[index])  # type: ignore[index]
    width, height = image.size
    split_x, val_y = int(SPLIT_X * width), int(VAL_Y * height)
    windows = {"train": (0, 0, split_x, val_y), "val": (0, val_y, split_x, height), "test": (split_x, 0, width, height)}
    out = {}
    for name, (x0, y0, x1, y1) in windows.items():
        kept = []
        for bx0, by0, bx1, by1, label in boxes:
            cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
            if x0 <= cx < x1 and y0 <= cy < y1:
                clipped = (max(bx0, x0) - x0, max(by0, y0) - y0, min(bx1, x1) - x0, min(by1, y1) - y0, label)
                if clipped[2] - clipped[0] >= 2 and clipped[3] - clipped[1] >= 2:
                    kept.append(clipped)
        out[name] = (image.crop((x0, y0, x1, y1)), kept)
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(data: Path, name: str, seed: int, *, upscale: float | None = None, epochs: int | None = None) -> dict:
    from transferkit.estimator import TransferEstimator

    parts = areas(data)
    shown, strategy, pretrained = ROWS[name]
    est = TransferEstimator("efficientnet_lite0", strategy, task="detection", pretrained=pretrained,
                            epochs=epochs or EPOCHS, patience=PATIENCE, batch_size=BATCH_SIZE, seed=seed,
                            progress=False, task_params={**OURS, **({} if upscale is None else {"upscale": upscale})})
    start = time.perf_counter()
    est.fit([parts["train"][0]], [parts["train"][1]], eval_set=([parts["val"][0]], [parts["val"][1]]))
    seconds = time.perf_counter() - start
    metrics = est.evaluate([parts["test"][0]], [parts["test"][1]])
    return {"row": shown, "seconds": round(seconds, 1), "peak_mb": round(peak_mb()), "map_50": metrics["map_50"],
            "map": metrics["map"], "map_75": metrics["map_75"], "best_epoch": est.strategy_info_.get("best_epoch"),
            "epochs_run": len(est.history_), "history": est.history_, "seed": seed,
            "task_params": {**OURS, **({} if upscale is None else {"upscale": upscale})}, "epochs": epochs or EPOCHS}


def run_peer(data: Path, seed: int) -> dict:
    """torchvision's detection tutorial, as written there, on the same backbone weights and training tiles."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.transforms.v2 import functional as TF

    from transferkit.backbones import create_backbone
    from transferkit.tasks.detectors import FeaturePyramid
    from transferkit.tasks.tiling import boxes_in, merge_detections, windows_of

    torch.manual_seed(seed)
    parts = areas(data)
    train_image, train_boxes = parts["train"]
    pixels = TF.to_dtype(TF.to_image(train_image), torch.float32, scale=True)
    all_boxes = np.array([b[:4] for b in train_boxes], np.float32)
    tiles = []
    for window in windows_of(0, pixels.shape[2], pixels.shape[1], TILE, 0.0):
        boxes, labels = boxes_in(window, all_boxes, np.ones(len(all_boxes), np.int64))
        if len(boxes):
            tiles.append((pixels[:, window.y0:window.y1, window.x0:window.x1],
                          {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}))
    backbone = create_backbone("efficientnet_lite0")
    # the tutorial's detector with its defaults (800-pixel inputs, anchors of 32 to 512 pixels); only the input
    # normalisation is the one these weights were trained with
    model = FasterRCNN(FeaturePyramid(backbone, 256), num_classes=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    backbone.train()
    params = [p for p in [*model.parameters(), *backbone.parameters()] if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=0.0005)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    start = time.perf_counter()
    for _epoch in range(PEER_EPOCHS):
        model.train()
        order = torch.randperm(len(tiles)).tolist()
        for first in range(0, len(order), 2):
            images, targets = [], []
            for i in order[first:first + 2]:
                image, target = tiles[i]
                if torch.rand(()) < 0.5:  # the tutorial's RandomHorizontalFlip
                    width = image.shape[2]
                    image = image.flip(-1)
                    boxes = target["boxes"].clone()
                    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
                    target = {**target, "boxes": boxes}
                images.append(image)
                targets.append(target)
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    # scored exactly as ours: the test area in the same overlapping tiles, merged by NMS
    model.eval()
    backbone.eval()
    test_image, test_boxes = parts["test"]
    task = Detection().configure(OURS).fit_targets([json.dumps([list(b) for b in test_boxes])])
    dataset = task._dataset(task.samples([test_image]), None, train=False)
    found = []
    with torch.inference_mode():
        for t in range(len(dataset)):
            found.append((dataset.windows[t], model([dataset[t][0]])[0]))
    merged = np.empty(1, dtype=object)
    merged[0] = merge_detections(found, iou=task.settings["nms_iou"])
    metrics = task.metrics([json.dumps([list(b) for b in test_boxes])], merged)
    return {"row": "peer: torchvision tutorial (Faster R-CNN + FPN, SGD, 20 epochs)", "seconds": round(seconds, 1),
            "peak_mb": round(peak_mb()), "map_50": metrics["map_50"], "map": metrics["map"],
            "map_75": metrics["map_75"], "train_tiles": len(tiles), "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detect_trees.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2, help="rows run at the same time")
    parser.add_argument("--rows", default=None, help="comma-separated rows to run (default: all); the others are "
                        "kept from --out when it exists")
    parser.add_argument("--machine", default="", help="a note on the machine's state, kept in the JSON")
    parser.add_argument("--upscale", type=float, default=None, help="our rows' detection setting upscale")
    parser.add_argument("--epochs", type=int, default=None, help="our rows' epochs (default: EPOCHS)")
    parser.add_argument("--row", default=None, choices=[*ROWS, "peer"],
                        help="run one row in this process and print its JSON")
    args = parser.parse_args()
    if args.row is not None:
        result = (run_peer(args.data, args.seed) if args.row == "peer"
                  else run_ours(args.data, args.row, args.seed, upscale=args.upscale, epochs=args.epochs))
        print("RESULT " + json.dumps({"key": args.row, **result}))
        return
    parts = areas(args.data)
    results = {"machine": f"{torch.get_num_threads()} threads per row, {args.parallel} rows at a time; {args.machine}",
               "split": {"image": IMAGE, "train": f"x < {SPLIT_X} W, y < {VAL_Y} H", "val": f"x < {SPLIT_X} W, "
                         f"y >= {VAL_Y} H", "test": f"x >= {SPLIT_X} W",
                         "boxes": {k: len(v[1]) for k, v in parts.items()}},
               "ours": OURS, "epochs": EPOCHS, "patience": PATIENCE, "rows": []}
    order = ["finetune", "peer", "head_only", "scratch"]
    if args.rows:
        chosen = args.rows.split(",")
        kept = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
        shown = {ROWS[key][0]: key for key in ROWS}  # rows written before they carried their key
        results["rows"] = [r for r in kept if "failed" not in r
                           and r.get("key", shown.get(r["row"], r["row"])) not in chosen]
        order = chosen
    lock = threading.Lock()

    def run(row: str) -> None:
        done = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--seed", str(args.seed),
                               "--row", row, *(["--upscale", str(args.upscale)] if args.upscale else []),
                               *(["--epochs", str(args.epochs)] if args.epochs else [])],
                              capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        with lock:
            if not lines:
                print(done.stderr[-3000:], file=sys.stderr)
                results["rows"].append({"row": row, "failed": done.stderr[-500:]})
            else:
                shown = json.loads(lines[-1][7:])
                results["rows"].append(shown)
                print(f"{shown['row']:<62} mAP@0.5 {shown['map_50']:.3f}  mAP@[.5:.95] {shown['map']:.3f}  "
                      f"{shown['seconds']:.0f} s  {shown['peak_mb']} MB", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    # rows side by side, each in its own process: the default recipe and the peer start together
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(run, order))


if __name__ == "__main__":
    main()
