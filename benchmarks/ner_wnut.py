"""Named entities on WNUT-16 tweets (10 entity types, BIO): MiniLM's linear probe and fine-tuning.

``../shared/data/text/ner/wnut16_train.conll`` is split by sentence order, the first 80% to train
and the last 20% to test, before any result is looked at. Each row is transferkit's ``ner`` task
(``TransferEstimator(task="ner")``) with the strategy's defaults; the score is seqeval's entity-level
micro F1 on the test part, the time the fit's (feature extraction and training, not model loading).

    python benchmarks/ner_wnut.py [--rows probe,finetune] [--out benchmarks/results/ner_wnut.json] [--limit N]
        [--data ../shared/data/text/ner/wnut16_train.conll]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from transferkit import TransferEstimator
from transferkit.data.tagged import read_tagged

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "ner" / "wnut16_train.conll"
ROWS = {
    "probe": {"backbone": "minilm", "strategy": "linear_probe"},
    "finetune": {"backbone": "minilm", "strategy": "finetune"},
    "lora": {"backbone": "minilm", "strategy": "lora"},
    "lp_ft": {"backbone": "minilm", "strategy": "lp_ft"},
    "mpnet_finetune": {"backbone": "mpnet", "strategy": "finetune"},
    "scratch": {"backbone": "minilm", "strategy": "finetune", "pretrained": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="probe,finetune", help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ner_wnut.json")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="the CoNLL file (default: ../shared/data/...)")
    args = parser.parse_args()

    samples = read_tagged(args.data)
    if args.limit:
        samples = samples.subset(range(min(args.limit, len(samples))))
    cut = int(0.8 * len(samples))
    train, test = samples.subset(range(cut)), samples.subset(range(cut, len(samples)))
    print(f"WNUT-16: {len(train)} training and {len(test)} test sentences (split by order)")
    results = []
    for name in args.rows.split(","):
        settings = dict(ROWS[name])
        est = TransferEstimator(task="ner", progress=False, seed=args.seed, **settings)
        start = time.perf_counter()
        est.fit(train)
        wall = time.perf_counter() - start
        metrics = est.evaluate(test)
        row = {"row": name, **settings, "entity_f1": round(100 * metrics["f1"], 1),
               "precision": round(100 * metrics["precision"], 1), "recall": round(100 * metrics["recall"], 1),
               "token_accuracy": round(100 * metrics["token_accuracy"], 2), "fit_seconds": round(wall, 1),
               "strategy_info": {k: v for k, v in est.strategy_info_.items() if k != "settings"},
               "per_type": metrics["per_type"]}
        results.append(row)
        print(f"{name:<16} F1 {row['entity_f1']:5.1f}  P {row['precision']:5.1f}  R {row['recall']:5.1f}  "
              f"token acc {row['token_accuracy']:6.2f}  fit {wall:7.1f}s", flush=True)
    print("\n| row | backbone | strategy | entity F1 | P | R | fit (s) |\n|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['row']} | {row['backbone']} | {row['strategy']} | {row['entity_f1']} | {row['precision']} | "
              f"{row['recall']} | {row['fit_seconds']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"data": str(args.data.name), "split": "sentence order 80/20", "train_sentences": len(train),
              "test_sentences": len(test), "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "command": f"python benchmarks/ner_wnut.py --rows {args.rows}" + (f" --limit {args.limit}"
                                                                                  if args.limit else ""),
              "rows": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
