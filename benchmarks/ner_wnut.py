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
import sys
import time
from pathlib import Path

import torch

from transferkit import TransferEstimator
from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.data import Samples
from transferkit.data.tagged import read_tagged, split_tags
from transferkit.tasks.base import default_fit_settings

sys.path.insert(0, str(Path(__file__).parent))  # ner_hf_peer, beside this script

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "ner" / "wnut16_train.conll"
ROWS = {
    "probe": {"backbone": "minilm", "strategy": "linear_probe"},
    "finetune": {"backbone": "minilm", "strategy": "finetune"},
    "lora": {"backbone": "minilm", "strategy": "lora"},
    "lp_ft": {"backbone": "minilm", "strategy": "lp_ft"},
    "mpnet_finetune": {"backbone": "mpnet", "strategy": "finetune"},
    # the default recipe on mpnet with half its epochs: mpnet costs about 8 times minilm per step
    "mpnet_default_2ep": {"backbone": "mpnet", **default_fit_settings("ner"), "epochs": 2},
    "mpnet_default": {"backbone": "mpnet", **default_fit_settings("ner")},
    "scratch": {"backbone": "minilm", "strategy": "finetune", "pretrained": False},
    # what `transferkit fit DATA --task ner` does with no strategy (the task's default_fit)
    "default": {"backbone": DEFAULT_BACKBONE["text"], **default_fit_settings("ner")},
}
# recipes tried for the task's default, compared with --select (never on the test part)
CANDIDATES = {
    "ft_b8": {"backbone": "minilm", "strategy": "finetune", "batch_size": 8},
    "ft_b16": {"backbone": "minilm", "strategy": "finetune", "batch_size": 16},
    "ft_b8_ld9": {"backbone": "minilm", "strategy": "finetune", "batch_size": 8, "layer_decay": 0.9},
    "ft_b8_lr2": {"backbone": "minilm", "strategy": "finetune", "batch_size": 8, "lr": 2e-4},
    "ft_b8_noval": {"backbone": "minilm", "strategy": "finetune", "batch_size": 8, "val_fraction": 0.0},
}
PEER = "hf_trainer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="probe,finetune", help="comma-separated, of "
                        + ", ".join([*ROWS, PEER, *CANDIDATES]))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ner_wnut.json")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="the CoNLL file (default: ../shared/data/...)")
    parser.add_argument("--select", action="store_true", help="choose recipes: split the training part again "
                        "by order, 80/20, and score on its last fifth (the test part is not read)")
    args = parser.parse_args()

    samples = read_tagged(args.data)
    if args.limit:
        samples = samples.subset(range(min(args.limit, len(samples))))
    cut = int(0.8 * len(samples))
    train, test = samples.subset(range(cut)), samples.subset(range(cut, len(samples)))
    if args.select:
        inner = int(0.8 * len(train))
        train, test = train.subset(range(inner)), train.subset(range(inner, len(train)))
    print(f"WNUT-16: {len(train)} training and {len(test)} {'validation' if args.select else 'test'} sentences "
          "(split by order)")
    results = []
    for name in args.rows.split(","):
        row = run_row(name, train, test, seed=args.seed)
        row["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
        results.append(row)
        print(f"{name:<16} F1 {row['entity_f1']:5.1f}  P {row['precision']:5.1f}  R {row['recall']:5.1f}  "
              f"token acc {row['token_accuracy']:6.2f}  fit {row['fit_seconds']:7.1f}s", flush=True)
        write_report(args, train, test, results)
    print("\n| row | backbone | strategy | entity F1 | P | R | fit (s) |\n|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['row']} | {row['backbone']} | {row['strategy']} | {row['entity_f1']} | {row['precision']} | "
              f"{row['recall']} | {row['fit_seconds']} |")
    print(f"wrote {args.out}")


def percent(metrics: dict) -> dict:
    return {"entity_f1": round(100 * metrics["f1"], 1), "precision": round(100 * metrics["precision"], 1),
            "recall": round(100 * metrics["recall"], 1), "token_accuracy": round(100 * metrics["token_accuracy"], 2)}


def run_row(name: str, train: Samples, test: Samples, *, seed: int) -> dict:
    """One row: fit on ``train``, score on ``test``; the peer, or transferkit with the row's settings."""
    if name == PEER:
        from ner_hf_peer import run_hf_trainer, seqeval_scores

        pairs = [[(item.words, split_tags(label)) for item, label in zip(part.items, part.labels,
                                                                                         strict=True)]
                 for part in (train, test)]
        out = run_hf_trainer(pairs[0], pairs[1], seed=seed)
        metrics = seqeval_scores([tags for _, tags in pairs[1]], out["y_pred"])
        return {"row": name, "backbone": "minilm (same folder)", "strategy": "HF Trainer, lr 5e-5, 5 epochs, batch 8",
                **percent(metrics), "fit_seconds": round(out["fit_seconds"], 1), "per_type": metrics["per_type"]}
    settings = dict({**ROWS, **CANDIDATES}[name])
    est = TransferEstimator(task="ner", progress=False, seed=seed, **settings)
    start = time.perf_counter()
    est.fit(train)
    wall = time.perf_counter() - start
    metrics = est.evaluate(test)
    return {"row": name, **settings, **percent(metrics), "fit_seconds": round(wall, 1),
            "strategy_info": {k: v for k, v in est.strategy_info_.items() if k != "settings"},
            "per_type": metrics["per_type"]}


def write_report(args: argparse.Namespace, train: object, test: object, results: list[dict]) -> None:
    """The JSON of the rows run so far (rewritten after each row, so a long run keeps what it measured)."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    split = "sentence order 80/20" + (", the training part again 80/20 (selection)" if args.select else "")
    report = {"data": str(args.data.name), "split": split, "train_sentences": len(train),
              "test_sentences": len(test), "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "command": f"python benchmarks/ner_wnut.py --rows {args.rows}" + (f" --limit {args.limit}"
                                                                                  if args.limit else "")
              + (" --select" if args.select else ""),
              "rows": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
