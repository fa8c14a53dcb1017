"""What checkpoints cost on the README's few-shot recipe: the CLI fit (which checkpoints) against the same
estimator without checkpoints.

The recipe: 32 SST-2 training sentences (16 per class, ``default_rng(seed)``), ``minilm``, ``--strategy
contrastive --epochs 50 --param train_last_k=6 --batch-size 16 --val-fraction 0 --mixed-precision auto``: 50
epochs of 2 optimizer steps. Both run in this process, the CLI through its typer app; checkpoint writes
are counted and timed by wrapping ``Checkpoints.save``. Run it under another checkout's ``src`` (``PYTHONPATH``)
to measure that version.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/checkpoint_cost.py --out benchmarks/results/checkpoint_cost.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import tasks

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"strategy": "contrastive", "epochs": 50, "batch_size": 16, "val_fraction": 0.0, "mixed_precision": "auto"}


def recipe_options() -> tuple[dict[str, Any], list[str]]:
    """The recipe's ``train_last_k=6`` for the estimator and the CLI of the transferkit being measured: a
    strategy setting since per-method configs (``transferkit.config``), an argument of its own before."""
    try:
        import transferkit.config  # noqa: F401
    except ImportError:
        return {"train_last_k": 6}, ["--train-last-k", "6"]
    # the SST-2 labels are 0/1: numeric labels need the task named
    return {"strategy_params": {"train_last_k": 6}}, ["--param", "train_last_k=6", "--task", "classification"]


def few_shot_sentences(data: Path, per_class: int, seed: int) -> tuple[list[str], list[str]]:
    train, _ = tasks.sst2(data)
    labels = np.asarray(train.labels)
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                             for c in sorted(set(labels.tolist()))])
    return [train.items[i] for i in picked], [str(labels[i]) for i in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="cli,estimator")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "checkpoint_cost.json")
    args = parser.parse_args()

    import transferkit
    from transferkit import TransferClassifier
    from transferkit.checkpoint import Checkpoints
    from transferkit.cli import app

    texts, labels = few_shot_sentences(args.data, args.per_class, args.seed)
    writes: list[float] = []
    save = Checkpoints.save

    def timed_save(self: Checkpoints, *a: Any, **k: Any) -> None:
        start = time.perf_counter()
        save(self, *a, **k)
        writes.append(time.perf_counter() - start)

    Checkpoints.save = timed_save  # type: ignore[method-assign]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "few_shot.csv"
        with table.open("w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *zip(texts, labels, strict=True)])
        # load the weights and warm the caches once, outside the timings
        TransferClassifier(backbone="minilm", strategy="contrastive", epochs=1, progress=False).fit(texts, labels)
        estimator_options, cli_options = recipe_options()
        for variant in args.variants.split(","):
            writes.clear()
            start = time.perf_counter()
            if variant == "cli":
                cli = ["fit", str(table), "--backbone", "minilm", "--strategy", "contrastive", "--epochs", "50",
                       *cli_options, "--batch-size", "16", "--val-fraction", "0", "--mixed-precision",
                       "auto", "--out", str(Path(tmp) / "run")]
                try:
                    app(cli, standalone_mode=False)
                except SystemExit as exc:
                    if exc.code:
                        raise
            else:
                TransferClassifier(backbone="minilm", progress=False, **RECIPE, **estimator_options).fit(texts, labels)
            results[variant] = {"seconds": round(time.perf_counter() - start, 1), "checkpoint_writes": len(writes),
                                "checkpoint_write_seconds": round(sum(writes), 1)}
            print(variant, results[variant], flush=True)
    commit = subprocess.run(["git", "-C", str(Path(transferkit.__file__).parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    recipe = {**RECIPE, "train_last_k": 6, "backbone": "minilm", "sentences": len(texts)}
    report = {"recipe": recipe, "results": results, "transferkit_src": str(Path(transferkit.__file__).parent),
              "commit": commit, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "machine": platform.processor() or platform.machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
