"""Speakers of FSDD: speaker identification, and verification of a speaker never seen in training.

FSDD has 4 speakers x 10 digits x 50 takes (8 kHz). Takes 0-4 are the official test set; training uses
takes 5-9 (the machine is shared; fine-tuning on more takes would not fit its time). Two benchmarks:

* identification: which of the 4 speakers (``classification``), trained on takes 5-9 of all speakers,
  accuracy on takes 0-4;
* verification, leave one speaker out: a ``verification`` model is trained on takes 5-9 of three
  speakers; the trials are every pair of test takes (0-4) that involves the held-out speaker: same
  speaker (held-out x held-out) or not (held-out x the others). EER by cosine of the embeddings, and the
  accuracy at the pair threshold the model chose on its own validation data (its training speakers
  only). Mean over the 4 held-out speakers.

Rows: ``ge2e_speaker`` and ``whisper_tiny_en``, each as a frozen probe (``linear_probe``) and fine-tuned
(``finetune``: the AAM softmax for verification, cross-entropy for identification), and MFCC mean/std
(no backbone: logistic regression for identification, standardised cosine for verification, its
threshold chosen on the training speakers' pairs).

    python benchmarks/speakers.py [--rows mfcc,ge2e_probe,...] [--data ../shared/data]
        [--out benchmarks/results/speakers.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import tasks
from audio_features import mfcc_stats
from transferkit import TransferEstimator
from transferkit.data import Samples
from transferkit.tasks import Classification
from transferkit.tasks.verification import equal_error_rate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
ROWS = {
    "mfcc": None,
    "ge2e_probe": ("ge2e_speaker", "linear_probe"),
    "ge2e_finetune": ("ge2e_speaker", "finetune"),
    "whisper_tiny_en_probe": ("whisper_tiny_en", "linear_probe"),
    "whisper_tiny_en_finetune": ("whisper_tiny_en", "finetune"),
}
FINETUNE = {"epochs": 4, "batch_size": 16}


def by_speaker(data: Path) -> tuple[Samples, Samples]:
    """``(train, test)`` FSDD clips labelled by speaker: takes 5-9 and takes 0-4."""
    samples = tasks.fsdd(data)
    fields = tasks.fsdd_fields(samples)
    samples = Samples(items=samples.items, labels=[speaker for _, speaker, _ in fields], modality="audio",
                      origins=samples.origins)
    return (samples.subset([i for i, (_, _, take) in enumerate(fields) if 5 <= take < 10]),
            samples.subset([i for i, (_, _, take) in enumerate(fields) if take < 5]))


def only(samples: Samples, speakers: set[str]) -> Samples:
    return samples.subset([i for i, label in enumerate(samples.labels) if label in speakers])


def mfcc(samples: Samples) -> np.ndarray:
    return np.stack([mfcc_stats(Path(p), sample_rate=8000) for p in samples.items]).astype(np.float32)


def settings(row: str, seed: int) -> dict:
    backbone, strategy = ROWS[row]
    return {"backbone": backbone, "strategy": strategy, "seed": seed, "progress": False,
            **(FINETUNE if strategy != "linear_probe" else {})}


def identification(row: str, train: Samples, test: Samples, seed: int) -> dict:
    start = time.perf_counter()
    if ROWS[row] is None:
        task = Classification().fit_targets(train.labels)
        fitted = task.fit_probe(mfcc(train), task.encode(train.labels), c=None, seed=seed)
        accuracy = task.metrics(test.labels, task.decode(mfcc(test) @ fitted.weight.T + fitted.bias))["accuracy"]
    else:
        est = TransferEstimator(task="classification", **settings(row, seed)).fit(train)
        accuracy = est.evaluate(test)["accuracy"]
    return {"identification_accuracy": round(100 * accuracy, 1),
            "identification_s": round(time.perf_counter() - start, 1)}


def held_out_trials(embeddings: np.ndarray, labels: list[str], held_out: str) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and truth of every pair of test clips that involves the held-out speaker."""
    names = np.asarray(labels)
    upper = np.triu_indices(len(names), k=1)
    involved = (names[upper[0]] == held_out) | (names[upper[1]] == held_out)
    return (embeddings @ embeddings.T)[upper][involved], (names[:, None] == names[None, :])[upper][involved]


def verification_fold(row: str, train: Samples, test: Samples, held_out: str, seed: int) -> dict:
    seen = only(train, set(SPEAKERS) - {held_out})
    if ROWS[row] is None:
        train_x, test_x = mfcc(seen), mfcc(test)
        mean, scale = train_x.mean(axis=0), train_x.std(axis=0) + 1e-8
        unit = lambda x: ((x - mean) / scale) / np.linalg.norm((x - mean) / scale, axis=1, keepdims=True)  # noqa: E731
        upper = np.triu_indices(len(seen), k=1)
        names = np.asarray(seen.labels)
        _, threshold = equal_error_rate((unit(train_x) @ unit(train_x).T)[upper], (names[:, None] == names)[upper])
        embeddings = unit(test_x)
    else:
        est = TransferEstimator(task="verification", **settings(row, seed)).fit(seen)
        threshold = est.task_.pair_threshold
        embeddings = est.task_.embeddings(est.model_, test, use_cache=not est.backbone_trained_)
    scores, same = held_out_trials(embeddings, list(test.labels), held_out)
    eer, _ = equal_error_rate(scores, same)
    return {"held_out": held_out, "eer": eer, "accuracy_at_threshold": float(((scores >= threshold) == same).mean()),
            "threshold": threshold, "trials": len(same), "same_speaker_trials": int(same.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speakers.json")
    args = parser.parse_args()
    if not (args.data / "speech" / "fsdd").is_dir():
        raise SystemExit(f"no speech/fsdd folder in {args.data}; pass --data")

    train, test = by_speaker(args.data)
    print(f"FSDD by speaker: {len(train)} training clips (takes 5-9), {len(test)} test clips (takes 0-4)")
    rows = []
    for row in args.rows.split(","):
        start = time.perf_counter()
        result = {"row": row, **identification(row, train, test, args.seed)}
        folds = [verification_fold(row, train, test, speaker, args.seed) for speaker in SPEAKERS]
        result |= {"loso_eer": round(100 * float(np.mean([f["eer"] for f in folds])), 2),
                   "loso_accuracy_at_threshold": round(100 * float(np.mean([f["accuracy_at_threshold"]
                                                                            for f in folds])), 1),
                   "folds": folds, "total_s": round(time.perf_counter() - start, 1)}
        rows.append(result)
        print(f"{row:<26} identification {result['identification_accuracy']:5.1f} %   LOSO EER "
              f"{result['loso_eer']:5.2f} %   accuracy at threshold {result['loso_accuracy_at_threshold']:5.1f} %"
              f"   ({result['total_s']} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # keep rows measured in earlier runs, replacing those measured again
        done = {row["row"] for row in rows}
        rows = [row for row in json.loads(args.out.read_text())["rows"] if row["row"] not in done] + rows
    args.out.write_text(json.dumps({
        "split": "train takes 5-9, test takes 0-4 (official test set); verification leaves one speaker out",
        "n_train": len(train), "n_test": len(test), "finetune": FINETUNE, "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "shared": True}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
