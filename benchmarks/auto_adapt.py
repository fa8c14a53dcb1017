"""The automatic default of ``adapt`` (no method) against single methods' label-free rows, side by side.

* digits: MNIST -> USPS and USPS -> MNIST from raw pixels through the zoo's ImageNet CNN (EfficientNet-Lite0 at
  64 px, no flips): ``--source-size`` source digits (per class), as many unlabelled target training digits, scored
  on ``--eval-size`` target test digits (labels used only to score). Rows: ``source_only`` and ``cbst`` on the
  frozen features, and ``auto`` (``adapt`` without a method, ``--budget``), each timed in the same run.
* features: Office-Caltech SURF and Amazon-400 (``adapt_features.py``'s suites and transforms): ``auto``
  (``DomainAdaptationClassifier("auto")``) against ``cbst``, the best single label-free row of today's table.

    nice -n 5 python benchmarks/auto_adapt.py --data ../shared/data --parts digits,features
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
BACKBONE_OPTIONS = {"image_size": 64, "hflip": False}


def digit_samples(x: np.ndarray, y: np.ndarray, per_class: int, seed: int, name: str) -> Any:
    from transferkit.data import Samples

    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=min(per_class, int((y == c).sum())),
                                              replace=False) for c in range(10)]))
    return Samples(items=[(x[i] * 255).astype(np.uint8) for i in pick], labels=[str(int(y[i])) for i in pick],
                   modality="image", origins=[f"{name}[{i}]" for i in pick])


def digits(args: argparse.Namespace) -> list[dict[str, Any]]:
    import tasks
    from transferkit.adapt.api import adapt

    domains = {"mnist": tasks.read_mnist(args.data), "usps": tasks.read_usps(args.data)}
    rows = []
    for source, target in (("mnist", "usps"), ("usps", "mnist")):
        src = digit_samples(*domains[source]["train"], args.source_size, 0, f"{source} train")
        tgt = digit_samples(*domains[target]["train"], args.source_size, 1, f"{target} train")
        evl = digit_samples(*domains[target]["test"], args.eval_size, 2, f"{target} test")
        for row in args.rows.split(","):
            start = time.perf_counter()
            summary = adapt(src, tgt, method=None if row == "auto" else row, target_eval=evl,
                            backbone="efficientnet_lite0", backbone_options=BACKBONE_OPTIONS, progress=False,
                            budget=args.budget if row == "auto" else None, deep_options={"epochs": args.epochs},
                            batch_size=64)
            accuracy = next(v["target"] for k, v in summary["accuracy"].items() if "after" in k and "oracle" not in k)
            record = {"task": f"{source}→{target}", "row": row, "method": summary["method"], "accuracy": accuracy,
                      "seconds": time.perf_counter() - start, "choice": summary.get("choice")}
            print(json.dumps({k: v for k, v in record.items() if k != "choice"}), flush=True)
            rows.append(record)
    return rows


def features(args: argparse.Namespace) -> list[dict[str, Any]]:
    from adapt_features import SUITES
    from transferkit.adapt.estimator import DomainAdaptationClassifier

    rows = []
    for suite in args.suites.split(","):
        for name, xs, ys, xt, yt in SUITES[suite](args.data):
            X = np.vstack([xs, xt])
            domain = np.concatenate([np.ones(len(xs)), -np.ones(len(xt))])
            y = np.concatenate([ys, -np.ones(len(xt), dtype=ys.dtype)])  # the target's labels are never given
            for method in ("cbst", "auto"):
                start = time.perf_counter()
                clf = DomainAdaptationClassifier(method, transforms=("identity", "hellinger", "l2")).fit(
                    X, y, sample_domain=domain)
                accuracy = float((clf.predict(xt) == yt).mean())
                rows.append({"suite": suite, "task": name, "row": method, "accuracy": accuracy,
                             "seconds": time.perf_counter() - start,
                             "choice": getattr(clf, "choice_", None) and clf.choice_.to_dict()})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "choice"}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--parts", default="digits,features")
    parser.add_argument("--rows", default="source_only,cbst,auto", help="digits: the rows to run")
    parser.add_argument("--suites", default="amazon400,office_caltech", help="features: the suites to run")
    parser.add_argument("--source-size", type=int, default=100, help="digits per class in source and target")
    parser.add_argument("--eval-size", type=int, default=100, help="target test digits per class")
    parser.add_argument("--epochs", type=int, default=3, help="deep epochs, if auto trains the backbone")
    parser.add_argument("--budget", type=float, default=1200.0, help="auto's budget in seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "auto_adapt.json")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for part in args.parts.split(","):
        results[part] = {"digits": digits, "features": features}[part](args)
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
