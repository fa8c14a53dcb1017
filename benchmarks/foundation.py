"""Every strategy, and training from scratch, on the shared image, text and speech tasks.

Each run happens in its own process, so its peak memory (max RSS) is its own. Results go to
``benchmarks/results/foundation.json`` and the table in ``benchmarks/RESULTS.md``.

    python benchmarks/foundation.py --data ../shared/data            # all tasks and methods
    python benchmarks/foundation.py --only sst2:finetune             # one run, printed as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"

# Each method: TransferClassifier parameters per task. Chosen once, before looking at test data.
TASKS: dict[str, dict[str, Any]] = {
    "hymenoptera": {"backbone": "efficientnet_lite0", "metric_split": "val (153)",
                    # lr from the sweep of benchmarks/lr_finder.py on a split of hymenoptera/train (3e-4 before)
                    "finetune": {"epochs": 4, "lr": 1e-4, "batch_size": 16},
                    "scratch": {"epochs": 8, "lr": 1e-3, "batch_size": 16}},
    "sst2": {"backbone": "minilm", "backbone_options": {"max_length": 64}, "metric_split": "dev (872)",
             # no validation split: chosen over 4 other settings on 1,000 held-out training sentences (tune_sst2.py)
             "finetune": {"epochs": 4, "lr": 1e-4, "batch_size": 32, "val_fraction": 0.0},
             "scratch": {"epochs": 4, "lr": 1e-3, "batch_size": 32}},
    # the same task on the larger optional text backbone: the usual base-size recipe (3 epochs, lr 5e-5)
    "sst2_mpnet": {"backbone": "mpnet", "backbone_options": {"max_length": 64}, "metric_split": "dev (872)",
                   "finetune": {"epochs": 3, "lr": 5e-5, "batch_size": 32, "val_fraction": 0.0},
                   "scratch": {"epochs": 3, "lr": 1e-3, "batch_size": 32, "val_fraction": 0.0}},
    "fsdd": {"backbone": "whisper_tiny_en", "metric_split": "test (200, official split)",
             "finetune": {"epochs": 5, "lr": 1e-4, "batch_size": 32},
             "scratch": {"epochs": 5, "lr": 1e-3, "batch_size": 32}},
}
# partial, gradual, lp_ft, contrastive and lora get fine-tuning's budget (epochs, batch size), each its own rates
METHODS = ("linear_probe", "finetune", "partial", "gradual", "lp_ft", "contrastive", "lora", "scratch")


def load_task(task: str, data: Path) -> tuple[Any, Any]:
    """Train and evaluation ``Samples`` of a shared task."""
    import tasks

    if task == "hymenoptera":
        return tasks.hymenoptera(data)
    if task in ("sst2", "sst2_mpnet"):
        return tasks.sst2_subset(data, train_size=2000)
    if task == "fsdd":
        return tasks.fsdd_official_split(tasks.fsdd(data))
    raise SystemExit(f"unknown task {task!r}")


def run_one(task: str, method: str, data: Path) -> dict[str, Any]:
    from transferkit import TransferClassifier

    conf = TASKS[task]
    train, test = load_task(task, data)
    params: dict[str, Any] = {"backbone": conf["backbone"], "backbone_options": conf.get("backbone_options"),
                              "progress": False, "seed": 0}
    if method == "linear_probe":
        params["strategy"] = "linear_probe"
    elif method in ("partial", "gradual", "lp_ft", "contrastive"):  # lp_ft halves the learning rate itself
        params.update({**conf["finetune"], "strategy": method})
    elif method == "lora":  # adapters start at zero: LoRA's own (higher) default rates
        params.update({k: v for k, v in conf["finetune"].items() if k != "lr"})
        params["strategy"] = "lora"
    else:
        params.update({"strategy": "finetune", **conf[method]})
        params["pretrained"] = method != "scratch"
    start = time.perf_counter()
    clf = TransferClassifier(**params).fit(train)
    fit_seconds = time.perf_counter() - start
    metrics = clf.evaluate(test)
    total = time.perf_counter() - start
    info = clf.strategy_info_
    head = sum(p.numel() for p in clf.model_.head.parameters())
    return {"task": task, "method": method, "backbone": conf["backbone"], "split": conf["metric_split"],
            "trainable_params": info.get("trainable_params", head),
            "n_train": len(train), "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "fit_seconds": round(fit_seconds, 1), "wall_seconds": round(total, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
            "params": {k: v for k, v in params.items() if k != "progress"},
            "strategy_info": clf.strategy_info_}


def write_results_md(rows: list[dict[str, Any]], path: Path) -> None:
    lines = ["| task | eval split | method | backbone | accuracy | macro-F1 | trainable params | wall time (s) | "
             "peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trainable = f"{r['trainable_params']:,}" if "trainable_params" in r else "n/a"
        lines.append(f"| {r['task']} | {r['split']} | {r['method']} | {r['backbone']}"
                     f"{' (random init)' if r['method'] == 'scratch' else ''} | {r['accuracy']:.3f} | "
                     f"{r['macro_f1']:.3f} | {trainable} | {r['wall_seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    table = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- foundation:start -->", "<!-- foundation:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = text.split(start)[0] + block + text.split(end, 1)[1]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", help="TASK:METHOD, run in this process and print JSON")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "foundation.json")
    args = parser.parse_args()
    if args.only:
        task, method = args.only.split(":")
        print("RESULT " + json.dumps(run_one(task, method, args.data)), flush=True)
        return
    rows: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--data", str(args.data), "--only", f"{task}:{method}"]
            with tempfile.TemporaryDirectory() as cache:  # a cold feature cache: times include extraction
                env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFERKIT_CACHE": cache}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            result = next((line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
            if result is None:
                print(f"{task}:{method} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            row = json.loads(result)
            # re-read: another invocation may have added rows meanwhile
            rows = json.loads(args.out.read_text()) if args.out.exists() else rows
            rows = [r for r in rows if (r["task"], r["method"]) != (task, method)] + [row]
            print(f"{task:<12} {method:<13} acc {row['accuracy']:.3f}  f1 {row['macro_f1']:.3f}  "
                  f"{row['wall_seconds']:>6.0f}s  {row['peak_rss_mb']:>6.0f} MB", flush=True)
            args.out.write_text(json.dumps(rows, indent=2) + "\n")
    order = {(t, m): i for i, (t, m) in enumerate((t, m) for t in TASKS for m in METHODS)}
    rows.sort(key=lambda r: order.get((r["task"], r["method"]), 99))
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    write_results_md(rows, ROOT / "benchmarks" / "RESULTS.md")


if __name__ == "__main__":
    main()
