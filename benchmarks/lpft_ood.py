"""LP-FT out of distribution: train on Amazon book reviews, test on books, DVDs, electronics, kitchen.

Kumar et al. (ICLR 2022) report that fine-tuning beats a linear probe in distribution but loses out
of distribution, and that LP-FT keeps the best of both. This runs linear_probe, finetune and lp_ft
from the packaged all-MiniLM-L6-v2 on the multi-domain sentiment data (Blitzer et al. 2007):
80% of books for training (seed 0), the other 20% of books in domain, and all 2,000 reviews of
each other domain out of distribution.

    python benchmarks/lpft_ood.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("books", "dvd", "electronics", "kitchen")
RECIPES: dict[str, dict[str, Any]] = {
    "linear_probe": {"strategy": "linear_probe"},
    "finetune": {"strategy": "finetune", "epochs": 3, "lr": 1e-4, "batch_size": 32},
    "lp_ft": {"strategy": "lp_ft", "epochs": 3, "lr": 1e-4, "batch_size": 32},
}


def read_reviews(data: Path, domain: str) -> tuple[list[str], list[str]]:
    """Texts and labels ("positive"/"negative") of one domain, positives first."""
    import tasks

    samples = tasks.amazon_reviews(data, domain)
    return list(samples.items), list(samples.labels or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--methods", default=",".join(RECIPES))
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lpft_ood.json")
    args = parser.parse_args()
    from transferkit import TransferClassifier

    domains = {d: read_reviews(args.data, d) for d in DOMAINS}
    texts, labels = domains["books"]
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(0.8 * len(texts))
    train_idx, test_idx = order[:cut], order[cut:]
    evals = {"books (in domain)": ([texts[i] for i in test_idx], [labels[i] for i in test_idx])}
    evals.update({d: domains[d] for d in DOMAINS[1:]})
    rows: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    for method in args.methods.split(","):
        start = time.perf_counter()
        clf = TransferClassifier(backbone="minilm", backbone_options={"max_length": args.max_length},
                                 progress=False, seed=0, **RECIPES[method])
        clf.fit([texts[i] for i in train_idx], [labels[i] for i in train_idx])
        fit_seconds = time.perf_counter() - start
        scores = {name: clf.score(x, y) for name, (x, y) in evals.items()}
        ood = float(np.mean([scores[d] for d in DOMAINS[1:]]))
        row = {"method": method, **{k: round(v, 4) for k, v in scores.items()}, "ood_mean": round(ood, 4),
               "fit_seconds": round(fit_seconds, 1)}
        rows = [r for r in rows if r["method"] != method] + [row]
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
