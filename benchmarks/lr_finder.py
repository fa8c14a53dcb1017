"""Does the range test's learning rate hold up against a real sweep of fine-tuning runs?

For each task: run ``transferkit.lr_finder.find_lr`` on the training sentences/images, then fine-tune
(``TransferClassifier(strategy="finetune")``) at rates log-spaced over 100x and centred on the
suggestion (suggestion x 0.1, 0.32, 1, 3.2, 10), score every run on held-out *training* data (never
the dev/val split that other tables report), and report where the suggestion falls relative to the
sweep's best rate and the accuracy lost by using the suggestion instead of the best.

* sst2: the 2,000 training sentences of the foundation benchmark (``default_rng(0)``), scored on
  1,000 other training sentences (``default_rng(1)``, as ``tune_sst2.py``); minilm, 64 tokens.
* hymenoptera: ``images/hymenoptera/train`` split per class (``stratified_split``, seed 0) into
  70% to fit and 30% to score; efficientnet_lite0.

About 20-25 minutes on 2 quiet CPU cores (range tests 1-3 min each, fine-tuning runs 1-2 min each):

    python benchmarks/lr_finder.py --data ../shared/data
    python benchmarks/lr_finder.py --tasks sst2 --n-train 160 --n-score 100 --points 3 --epochs 1 \\
        --num-steps 30 --out /tmp/lr_finder_smoke.json                      # a smoke run, ~2 minutes

Writes ``benchmarks/results/lr_finder.json`` and the curves to ``benchmarks/runs/lr_finder/TASK.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"backbone": "minilm", "backbone_options": {"max_length": 64}, "batch_size": 32, "epochs": 3,
             "score_split": "1,000 other SST-2 training sentences"},
    "hymenoptera": {"backbone": "efficientnet_lite0", "backbone_options": {}, "batch_size": 16, "epochs": 4,
                    "score_split": "30% of hymenoptera/train (stratified, seed 0)"},
}


def load_task(task: str, data: Path, n_train: int, n_score: int, score_fraction: float) -> tuple[Any, Any]:
    """``(fit_on, score_on)`` Samples; both come from the task's training data."""
    import tasks
    from transferkit.data import stratified_split

    if task == "sst2":
        return tasks.sst2_held_out(data, n_fit=n_train, n_score=n_score)  # as in foundation.py and tune_sst2.py
    if task == "hymenoptera":
        train, _ = tasks.hymenoptera(data)
        fit_idx, score_idx = stratified_split(train.labels or [], score_fraction, seed=0)
        return train.subset(fit_idx), train.subset(score_idx)
    raise SystemExit(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    from transferkit import TransferClassifier
    from transferkit.lr_finder import LRFinderConfig, find_lr

    conf = TASKS[task]
    options = dict(conf["backbone_options"])
    if args.image_size and task == "hymenoptera":
        options["image_size"] = args.image_size
    fit_on, score_on = load_task(task, args.data, args.n_train, args.n_score, args.score_fraction)
    epochs = args.epochs or conf["epochs"]
    print(f"{task}: fit on {len(fit_on)}, score on {len(score_on)} ({conf['score_split']})", flush=True)

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = find_lr(fit_on, backbone=conf["backbone"], backbone_options=options, batch_size=conf["batch_size"],
                        seed=0, config=LRFinderConfig(num_steps=args.num_steps))
    range_seconds = time.perf_counter() - start
    plot = ROOT / "benchmarks" / "runs" / "lr_finder" / f"{task}.png"
    found.plot(plot, title=f"{task}: {conf['backbone']}, finetune, batch {conf['batch_size']}")
    print(f"  range test {range_seconds:.0f}s: suggestion {found.suggestion:.3g} ({found.rule})", flush=True)
    for warning in caught:
        print(f"  note: {warning.message}", flush=True)

    half = (args.points - 1) // 2
    factors = np.geomspace(args.span ** -0.5, args.span**0.5, args.points) if args.points > 1 else np.ones(1)
    factors[half] = 1.0  # the suggestion itself, exactly
    sweep = []
    for factor in factors:
        lr = float(found.suggestion * factor)
        start = time.perf_counter()
        clf = TransferClassifier(backbone=conf["backbone"], strategy="finetune", backbone_options=options or None,
                                 lr=lr, epochs=epochs, batch_size=conf["batch_size"], seed=0, progress=False)
        accuracy = clf.fit(fit_on).evaluate(score_on)["accuracy"]
        sweep.append({"lr": lr, "factor": float(factor), "accuracy": accuracy,
                      "best_epoch": clf.strategy_info_.get("best_epoch"),
                      "seconds": round(time.perf_counter() - start, 1)})
        print(f"  lr {lr:.3g} (x{factor:.3g}): accuracy {accuracy:.3f}  {sweep[-1]['seconds']:.0f}s", flush=True)

    at_suggestion = sweep[half]
    best = max(sweep, key=lambda r: (r["accuracy"], -abs(math.log(r["factor"]))))
    n = len(score_on)
    # standard error of the difference of two accuracies on the same n items (upper bound: independent)
    p = (best["accuracy"] + at_suggestion["accuracy"]) / 2
    se_lost = math.sqrt(2 * p * (1 - p) / n)
    return {
        "task": task, "backbone": conf["backbone"], "backbone_options": options, "batch_size": conf["batch_size"],
        "epochs": epochs, "n_fit": len(fit_on), "n_score": n, "score_split": conf["score_split"],
        "range_test": {"suggestion": found.suggestion, "rule": found.rule, "candidates": found.candidates,
                       "diverged": found.diverged, "steps": len(found.lrs), "stopped_at": found.lrs[-1],
                       "bandwidth": found.bandwidth, "notes": found.notes, "seconds": round(range_seconds, 1),
                       "lrs": found.lrs, "losses": found.losses, "smoothed": found.smoothed},
        "sweep": sweep,
        "best_lr": best["lr"], "best_accuracy": best["accuracy"],
        "suggestion_over_best": found.suggestion / best["lr"],
        "best_at_sweep_edge": best is sweep[0] or best is sweep[-1],
        "accuracy_at_suggestion": at_suggestion["accuracy"],
        "accuracy_lost": best["accuracy"] - at_suggestion["accuracy"], "accuracy_lost_se": se_lost,
        "candidates_over_best": {k: (v / best["lr"] if v else None) for k, v in found.candidates.items()},
        "seconds": round(range_seconds + sum(r["seconds"] for r in sweep), 1),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | suggestion | best lr of sweep | suggestion / best | acc. at suggestion | best acc. | "
             "acc. lost (± SE) | range test (s) | total (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        edge = " (edge)" if r["best_at_sweep_edge"] else ""
        lines.append(f"| {r['task']} | {r['range_test']['suggestion']:.2g} | {r['best_lr']:.2g}{edge} | "
                     f"{r['suggestion_over_best']:.2g}x | {r['accuracy_at_suggestion']:.3f} | "
                     f"{r['best_accuracy']:.3f} | {r['accuracy_lost']:+.3f} (± {r['accuracy_lost_se']:.3f}) | "
                     f"{r['range_test']['seconds']:.0f} | {r['seconds']:.0f} |")
    for r in rows:
        lines += ["", f"{r['task']} sweep ({r['epochs']} epochs, batch {r['batch_size']}, fit {r['n_fit']}, "
                      f"score {r['n_score']}):", "| lr | x suggestion | accuracy | best epoch | s |",
                  "|---|---|---|---|---|"]
        lines += [f"| {s['lr']:.3g} | {s['factor']:.3g} | {s['accuracy']:.3f} | {s['best_epoch']} | "
                  f"{s['seconds']:.0f} |" for s in r["sweep"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--points", type=int, default=5, help="learning rates in the sweep (odd: the middle one "
                                                               "is the suggestion)")
    parser.add_argument("--span", type=float, default=100.0, help="highest / lowest rate of the sweep")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: per task)")
    parser.add_argument("--num-steps", type=int, default=100, help="steps of the range test")
    parser.add_argument("--n-train", type=int, default=2000, help="SST-2 training sentences to fit on")
    parser.add_argument("--n-score", type=int, default=1000, help="other SST-2 training sentences to score on")
    parser.add_argument("--score-fraction", type=float, default=0.3, help="hymenoptera/train share to score on")
    parser.add_argument("--image-size", type=int, default=None, help="hymenoptera image side (smoke runs only)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lr_finder.json")
    args = parser.parse_args()
    if args.points < 1 or args.points % 2 == 0:
        parser.error("--points must be odd, so that the suggestion itself is one of the rates")
    os.environ.setdefault("TQDM_DISABLE", "1")
    rows = [run_task(task, args) for task in args.tasks.split(",")]
    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "tasks": rows,
    }, indent=2) + "\n")
    print()
    print(format_table(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
