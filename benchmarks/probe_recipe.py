"""Why the default linear probe scored below a plain recipe on one image set: the centre crop or the chosen C?

Four probes on the same frozen features of each zoo image backbone: evaluation images resized on the
short side and centre-cropped (the ImageNet habit, transferkit's default until this study) or resized
whole to a square (no crop), times C chosen by cross-validation on the training data (the default) or
C = 1 (the plain recipe: StandardScaler + LogisticRegression(C=1)). Evidence is read on the training
data only: 5-fold cross-validated accuracy on each training set (the C search runs inside each fold);
the evaluation split's accuracy is reported beside it, never used to choose.

    nice -n 5 python benchmarks/probe_recipe.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DEFAULT_DATA = ROOT.parent / "shared" / "data"
RECIPES = {"crop, C by CV": (True, None), "crop, C=1": (True, 1.0),
           "whole, C by CV": (False, None), "whole, C=1": (False, 1.0)}


def digit_images(x: np.ndarray, y: np.ndarray, *, per_class: int, seed: int, origin: str) -> Any:
    from transferkit.data import Samples

    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=per_class, replace=False)
                                   for c in range(10)]))
    return Samples(items=[(x[i] * 255).astype(np.uint8) for i in pick], labels=[str(int(y[i])) for i in pick],
                   modality="image", origins=[f"{origin}[{i}]" for i in pick])


def load(task: str, data: Path) -> tuple[Any, Any]:
    import tasks

    if task == "hymenoptera":
        return tasks.hymenoptera(data)
    if task == "mnist":
        splits = tasks.read_mnist(data)
        return (digit_images(*splits["train"], per_class=30, seed=0, origin="mnist train"),
                digit_images(*splits["test"], per_class=50, seed=0, origin="mnist test"))
    if task == "usps":
        splits = tasks.read_usps(data)
        return (digit_images(*splits["train"], per_class=30, seed=0, origin="usps train"),
                digit_images(*splits["test"], per_class=50, seed=0, origin="usps test"))
    raise SystemExit(f"unknown task {task!r}")


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   classes: list[str], c: float | None) -> tuple[float, float | None]:
    from transferkit.tasks import Classification

    fitted = Classification(classes).fit_probe(train_x, train_y, c=c, seed=0)
    pred = (test_x @ fitted.weight.T + fitted.bias).argmax(1)
    return float((pred == test_y).mean()), fitted.info.get("probe_c")


def cross_validated(x: np.ndarray, y: np.ndarray, classes: list[str], c: float | None) -> float:
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    correct = 0
    for fit_idx, held_idx in folds.split(x, y):
        accuracy, _ = probe_accuracy(x[fit_idx], y[fit_idx], x[held_idx], y[held_idx], classes, c)
        correct += round(accuracy * len(held_idx))
    return correct / len(y)


def run(task: str, backbone_name: str, data: Path) -> list[dict[str, Any]]:
    from transferkit.backbones import BackboneSpec, create_backbone
    from transferkit.features import extract_features

    train, test = load(task, data)
    classes = sorted(set(train.labels))
    train_y = np.array([classes.index(label) for label in train.labels])
    test_y = np.array([classes.index(label) for label in test.labels])
    rows = []
    features = {}
    for crop in (True, False):
        start = time.perf_counter()
        backbone = create_backbone(BackboneSpec(backbone_name, options={"center_crop": crop}))
        features[crop] = (extract_features(backbone, train, progress=False),
                          extract_features(backbone, test, progress=False), time.perf_counter() - start)
    for recipe, (crop, c) in RECIPES.items():
        train_x, test_x, seconds = features[crop]
        cv = cross_validated(train_x, train_y, classes, c)
        accuracy, chosen = probe_accuracy(train_x, train_y, test_x, test_y, classes, c)
        rows.append({"task": task, "backbone": backbone_name, "recipe": recipe, "train_cv_accuracy": cv,
                     "eval_accuracy": accuracy, "chosen_c": chosen, "extract_seconds": seconds,
                     "train": len(train), "eval": len(test)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default="hymenoptera,mnist,usps")
    parser.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe_recipe.json")
    args = parser.parse_args()
    rows = [row for task in args.tasks.split(",") for name in args.backbones.split(",")
            for row in run(task, name, args.data)]
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print("| task | backbone | recipe | 5-fold CV on train | eval accuracy | C |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['backbone']} | {row['recipe']} | {row['train_cv_accuracy']:.3f} | "
              f"{row['eval_accuracy']:.3f} | {row['chosen_c']:.3g} |")


if __name__ == "__main__":
    main()
