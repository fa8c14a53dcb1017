"""The built-in demo: transfer from ImageNet to handwritten digits with a few labels per class.

It uses scikit-learn's bundled digits (1,797 real 8x8 scans), upscaled, keeps ``shots`` labelled
images per class for training and the rest for testing, and fits the packaged EfficientNet-Lite0 by
linear probe and by fine-tuning, and the same architecture from scratch, all offline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.safety import atomic_write, write_json


@dataclass
class DemoRow:
    name: str
    strategy: str
    pretrained: bool
    accuracy: float
    macro_f1: float
    fit_seconds: float
    run_dir: str


def digits_few_shot(shots: int, seed: int, test_size: int) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """``shots`` training images per class and a disjoint test set, as uint8 ``(N, 8, 8)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    labels = digits.target.astype(str)
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    for label in sorted(set(labels)):
        members = np.flatnonzero(labels == label)
        train_idx += rng.choice(members, size=shots, replace=False).tolist()
    rest = np.setdiff1d(np.arange(len(labels)), train_idx)
    test_idx = rng.choice(rest, size=min(test_size, len(rest)), replace=False)
    return images[train_idx], labels[train_idx].tolist(), images[test_idx], labels[test_idx].tolist()


def run_demo(out: str | Path = "transferkit-demo", *, shots: int = 10, image_size: int = 128, epochs: int = 12,
             test_size: int = 500, seed: int = 0, progress: bool = True, overwrite: bool = False) -> list[DemoRow]:
    """Run the three fits, write one run directory each under ``out``, return the table rows."""
    from transferkit.errors import ArtifactError
    from transferkit.estimator import TransferClassifier

    out = Path(out)
    if out.exists() and not overwrite:
        raise ArtifactError(f"{out} already exists; pass --overwrite or choose another --out")
    x_train, y_train, x_test, y_test = digits_few_shot(shots, seed, test_size)
    options = {"image_size": image_size, "hflip": False, "crop_scale": 0.8}
    runs: list[tuple[str, dict[str, Any]]] = [
        ("linear_probe", {"strategy": "linear_probe"}),
        ("finetune", {"strategy": "finetune", "epochs": epochs}),
        ("from_scratch", {"strategy": "finetune", "epochs": epochs, "pretrained": False}),
    ]
    rows: list[DemoRow] = []
    for name, params in runs:
        print(f"[{name}] fitting on {len(y_train)} labelled digits ({shots} per class)...", flush=True)
        clf = TransferClassifier(backbone="efficientnet_lite0", backbone_options=options, seed=seed,
                                 progress=progress, batch_size=32, val_fraction=0.0, **params)
        start = time.perf_counter()
        clf.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        metrics = clf.evaluate(x_test, y_test)
        run_dir = clf.save(out / name, overwrite=overwrite)
        rows.append(DemoRow(name, params["strategy"], params.get("pretrained", True), metrics["accuracy"],
                            metrics["macro_f1"], seconds, str(run_dir)))
    examples = out / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        image = Image.fromarray(x_test[i]).resize((64, 64), Image.Resampling.NEAREST)
        atomic_write(examples / f"digit{i}_true{y_test[i]}.png", lambda tmp, image=image: image.save(tmp, format="PNG"))
    write_json(out / "summary.json", [row.__dict__ for row in rows])
    return rows


def format_table(rows: list[DemoRow]) -> str:
    scratch = next((r for r in rows if not r.pretrained), None)
    lines = [f"{'run':<14} {'weights':<10} {'accuracy':>8} {'macro-F1':>8} {'fit time':>9} {'gain vs scratch':>15}"]
    for r in rows:
        gain = f"{(r.accuracy - scratch.accuracy) * 100:+.1f} pts" if scratch and r is not scratch else ""
        weights = "ImageNet" if r.pretrained else "random"
        lines.append(f"{r.name:<14} {weights:<10} {r.accuracy:>8.3f} {r.macro_f1:>8.3f} {r.fit_seconds:>8.1f}s "
                     f"{gain:>15}")
    return "\n".join(lines)
