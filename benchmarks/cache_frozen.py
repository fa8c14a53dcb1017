"""LP-FT of MiniLM's top half on SST-2, with the frozen layers run once (``cache_frozen``) or on every batch.

Trained on the 2,000 SST-2 sentences of the foundation table (a 0.1 validation split picks the epoch), scored
on 1,000 *other training* sentences (``held``), on 1,000 other training sentences of at least 12 words
(``held_long``, shaped like dev's full sentences), both what settings are chosen on, and on dev (872). The fit time
includes the LP-FT probe stage's feature extraction. One row per process:

    OMP_NUM_THREADS=1 python benchmarks/cache_frozen.py --data ../shared/data --k 3 --cache      # kept outputs
    OMP_NUM_THREADS=1 python benchmarks/cache_frozen.py --data ../shared/data --k 3 --no-cache   # the loop
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--k", type=int, default=3, help="train_last_k: layer groups that train (MiniLM has 7)")
    parser.add_argument("--lr", type=float, default=None, help="LP-FT's rate, halved by it (default: the text one)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--precision", default="no", help="mixed_precision: no, bf16, fp16 or auto")
    parser.add_argument("--group", action=argparse.BooleanOptionalAction, default=True,
                        help="with --cache: batches grouped by length (the default)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cache_frozen.json")
    args = parser.parse_args()
    import numpy as np

    import tasks
    from transferkit import TransferClassifier
    from transferkit.backbones.split import TopBlocks

    TopBlocks.group_by_length = args.group
    fit_on, held = tasks.sst2_held_out(args.data)
    train, dev = tasks.sst2(args.data)
    seen = set(fit_on.items) | set(held.items)
    long = [i for i, text in enumerate(train.items) if len(text.split()) >= 12 and text not in seen]
    held_long = train.subset(np.random.default_rng(1).choice(long, size=1000, replace=False))
    start = time.perf_counter()
    clf = TransferClassifier(backbone="minilm", backbone_options={"max_length": 64}, strategy="lp_ft", lr=args.lr,
                             epochs=args.epochs, batch_size=32, progress=False, seed=0,
                             mixed_precision=args.precision,
                             strategy_params={"train_last_k": args.k, "cache_frozen": args.cache}).fit(fit_on)
    fit_seconds = round(time.perf_counter() - start, 1)  # before any scoring
    row = {"task": "sst2", "k": args.k, "lr": args.lr, "epochs": args.epochs, "cache_frozen": args.cache,
           "grouped": args.cache and args.group, "precision": args.precision, "fit_seconds": fit_seconds,
           "held_long_accuracy": clf.evaluate(held_long)["accuracy"], "held_accuracy": clf.evaluate(held)["accuracy"],
           "dev_accuracy": clf.evaluate(dev)["accuracy"], "best_epoch": clf.strategy_info_.get("best_epoch")}
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    key = ("task", "k", "lr", "epochs", "cache_frozen", "grouped", "precision")
    rows = [r for r in rows if any(r.get(k) != row[k] for k in key)] + [row]
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
