"""Choose SST-2 fine-tuning settings without touching the dev set.

The 2,000 training sentences of the foundation benchmark (seed 0) are fitted with each candidate
setting and scored on 1,000 *other* SST-2 training sentences; the dev set is not read.

    python benchmarks/tune_sst2.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [
    {"strategy": "finetune", "epochs": 4, "lr": 1e-4, "batch_size": 32},
    {"strategy": "finetune", "epochs": 5, "lr": 2e-4, "batch_size": 32, "layer_decay": 1.0},
    {"strategy": "finetune", "epochs": 6, "lr": 1e-4, "batch_size": 16, "layer_decay": 1.0},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tune_sst2.json")
    parser.add_argument("--candidates", type=json.loads, default=CANDIDATES,
                        help="JSON list of TransferClassifier parameter dicts (default: the list in this file)")
    args = parser.parse_args()
    import tasks
    from transferkit import TransferClassifier

    fit_on, score_on = tasks.sst2_held_out(args.data, n_fit=2000, n_score=1000)  # foundation.py's 2,000 and others
    rows = []
    for params in args.candidates:
        start = time.perf_counter()
        params = {"backbone": "minilm", "backbone_options": {"max_length": 64}, **params}
        clf = TransferClassifier(progress=False, **params)
        accuracy = clf.fit(fit_on).evaluate(score_on)["accuracy"]
        rows.append({**params, "held_out_accuracy": accuracy, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps([*previous, rows[-1]], indent=2) + "\n")  # each row kept as soon as it ends


if __name__ == "__main__":
    main()
