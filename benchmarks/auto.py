"""The automatic default of ``fit`` and ``transferkit tune`` against the plain probe, on the foundation tasks.

Rows per task, each in its own process with an empty feature cache (so every row pays its own feature
extraction), trained on the task's training data and scored once on its evaluation split:

* ``probe``: ``fit --strategy linear_probe`` with the modality's default backbone (today's table's row);
* ``auto``: ``fit`` with no options (backbone by LogME among the installed zoo backbones within twice the
  default's cost, the probe, then LP-FT on the top half of a backbone that can be cut when it fits in 3x the
  probe's time);
* ``auto_budget``: ``fit --budget 10m`` (LP-FT competes with the probe when it fits);
* ``tune``: ``transferkit tune`` (20 trials unless ``--timeout`` stops it first, at most 3 epochs per trial,
  scored on a 0.2 split of the training data), then ``fit --config best.toml`` on all the training data.

    nice -n 5 python benchmarks/auto.py --data ../shared/data                      # every task and row
    nice -n 5 python benchmarks/auto.py --only hymenoptera:auto                    # one row, printed as JSON
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
sys.path.insert(0, str(ROOT / "benchmarks"))
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TASKS: dict[str, dict[str, Any]] = {
    "hymenoptera": {"backbone_options": None, "batch_size": 16, "eval": "val (153)"},
    "sst2": {"backbone_options": {"max_length": 64}, "batch_size": 32, "eval": "dev (872)"},
    "fsdd": {"backbone_options": None, "batch_size": 32, "eval": "test (200, official split)"},
}
ROWS = ("probe", "auto", "auto_budget", "tune")
BUDGET = 600.0


def run_row(task: str, row: str, data: Path, trials: int, timeout: float | None) -> dict[str, Any]:
    from foundation import load_task
    from transferkit.auto.choose import auto_fit
    from transferkit.backbones.zoo import DEFAULT_BACKBONE
    from transferkit.estimator import TransferClassifier

    train, test = load_task(task, data)
    settings = TASKS[task]
    template = TransferClassifier(DEFAULT_BACKBONE[train.modality], "linear_probe", progress=False,
                                  backbone_options=settings["backbone_options"], batch_size=settings["batch_size"])
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if row == "probe":
        fitted = template.fit(train)
    elif row in ("auto", "auto_budget"):
        fitted, choice = auto_fit(template, train, budget=BUDGET if row == "auto_budget" else None)
        extra = {"choice": choice.to_dict()}
    else:
        fitted, extra = _tune(template, train, trials, timeout)
    seconds = time.perf_counter() - start
    metrics = fitted.evaluate(test)
    return {"task": task, "row": row, "backbone": fitted.backbone, "strategy": fitted.strategy,
            "accuracy": metrics["accuracy"], "macro_f1": metrics.get("macro_f1"), "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}


def _tune(template: Any, train: Any, trials: int, timeout: float | None) -> tuple[Any, dict[str, Any]]:
    from sklearn.base import clone

    from transferkit.auto.tune import TuneConfig, tune

    with tempfile.TemporaryDirectory() as folder:
        result = tune(train, task="classification", backbone=template.backbone, storage=Path(folder) / "tune.db",
                      backbone_options=template.backbone_options,
                      config=TuneConfig(trials=trials, timeout=timeout, max_epochs=3,
                                        batch_size=template.batch_size))
    options, params = result.options, result.params
    fitted = clone(template).set_params(
        strategy=options["strategy"], lr=options.get("lr"), epochs=options.get("epochs"),
        layer_decay=options.get("layer_decay"), strategy_params=params.get("strategy") or None,
        regularizers=tuple(options.get("regularizer") or ()),
        regularizer_params={k: v for k, v in params.items() if k != "strategy"} or None).fit(train)
    states = [t["state"] for t in result.trials]
    return fitted, {"tune": {"trials": len(states), "complete": states.count("complete"),
                             "pruned": states.count("pruned"), "best_val": result.best_score,
                             "search_seconds": result.seconds, "best": {**options, "params": params},
                             "trial_rows": result.trials}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--rows", default="probe,auto,tune")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=None, help="tune: start no trial after this many seconds")
    parser.add_argument("--only", help="TASK:ROW, run in this process and print JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "auto.json")
    args = parser.parse_args()
    if args.only:
        task, row = args.only.split(":")
        print(json.dumps(run_row(task, row, args.data, args.trials, args.timeout), default=str))
        return
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    for task in args.tasks.split(","):
        for row in args.rows.split(","):
            with tempfile.TemporaryDirectory() as cache:
                command = [sys.executable, __file__, "--data", str(args.data), "--only", f"{task}:{row}",
                           "--trials", str(args.trials)] + (["--timeout", str(args.timeout)] if args.timeout else [])
                done = subprocess.run(command, capture_output=True, text=True,
                                      env={**os.environ, "TRANSFERKIT_CACHE": cache})
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results = [r for r in results if (r["task"], r["row"]) != (task, row)] + [result]
            args.out.write_text(json.dumps(results, indent=1) + "\n")
            print(f"{task:12s} {row:12s} {result['backbone']:18s} {result['strategy']:13s} "
                  f"{result['accuracy']:.4f} {result['seconds']:7.0f}s", flush=True)


if __name__ == "__main__":
    main()
