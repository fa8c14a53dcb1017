"""Spoken language identification on the KTuberling words (13 languages), with the speaker confound measured.

``../shared/data/speech/languages/`` holds single words read in 13 languages, probably by one or a few
speakers per language, so a classifier may recognise the voice or the microphone instead of the
language. The split keeps 30 % of each language's words (files) aside, at random (seed 0); every row is
the same closed-form logistic regression (``Classification.fit_probe``: standardised features, C by
5-fold cross-validation on the training words only) on other features:

* ``mfcc``: mean and standard deviation of 20 MFCCs (the baseline to beat);
* ``quietest_frames``: the mean log-mel spectrum of each clip's quietest 10 % of frames (background
  noise, almost no speech): a control that can only use the recording setup;
* ``ge2e_speaker``: the GE2E speaker embedding, trained to ignore what is said: a control that
  recognises voices;
* ``whisper_tiny_en`` / ``whisper_base``: mean-pooled Whisper encoder features (frozen probe);
* ``*_finetune``: the same encoder fine-tuned end to end (``TransferEstimator(strategy="finetune")``,
  ``--epochs`` (6), early stopping on a validation tenth of the training words), on the same test words.

Rows are merged into ``--out`` by name, so rows can be run separately.

    python benchmarks/languages.py [--rows mfcc,quietest_frames,...] [--data ../shared/data]
        [--out benchmarks/results/languages.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tasks
from audio_features import mfcc_stats, quietest_frames_spectrum
from transferkit.backbones import create_backbone
from transferkit.data import Samples
from transferkit.features import extract_features
from transferkit.tasks import Classification

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def handmade(fn: Callable[[Path], np.ndarray]) -> Callable[[Samples], np.ndarray]:
    return lambda samples: np.stack([fn(Path(p)) for p in samples.items]).astype(np.float32)


def backbone_features(name: str) -> Callable[[Samples], np.ndarray]:
    def features(samples: Samples) -> np.ndarray:
        return extract_features(create_backbone(name), samples, batch_size=16, progress=False)
    return features


ROWS: dict[str, tuple[str, Callable[[Samples], np.ndarray]]] = {
    "mfcc": ("MFCC mean/std (40)", handmade(mfcc_stats)),
    "quietest_frames": ("control: quietest 10 % of frames, log-mel (40)", handmade(quietest_frames_spectrum)),
    "ge2e_speaker": ("control: GE2E speaker embedding (256)", backbone_features("ge2e_speaker")),
    "whisper_tiny_en": ("Whisper tiny.en encoder, probe (384)", backbone_features("whisper_tiny_en")),
    "whisper_base": ("Whisper base encoder, probe (512)", backbone_features("whisper_base")),
}


FINETUNE_ROWS = {"whisper_tiny_en_finetune": "whisper_tiny_en", "whisper_base_finetune": "whisper_base",
                 "ge2e_speaker_finetune": "ge2e_speaker"}


def finetune_row(name: str, train: Samples, test: Samples, seed: int, epochs: int = 6) -> dict:
    from transferkit import TransferEstimator

    backbone = FINETUNE_ROWS[name]
    start = time.perf_counter()
    est = TransferEstimator(backbone=backbone, strategy="finetune", epochs=epochs, batch_size=16, seed=seed,
                            progress=False).fit(train)
    fit_s = time.perf_counter() - start
    metrics = est.evaluate(test)
    return {"row": name, "features": f"{backbone} fine-tuned (finetune, {epochs} epochs, batch 16)",
            "accuracy": round(100 * metrics["accuracy"], 1), "macro_f1": round(100 * metrics["macro_f1"], 1),
            "epochs_run": len(est.history_),
            "per_language": {lang: round(100 * r["recall"], 1) for lang, r in metrics["per_class"].items()},
            "fit_s": round(fit_s, 1), "total_s": round(time.perf_counter() - start, 1)}


def probe_row(name: str, train: Samples, test: Samples, seed: int, epochs: int = 6) -> dict:
    if name in FINETUNE_ROWS:
        return finetune_row(name, train, test, seed, epochs)
    label, featurise = ROWS[name]
    start = time.perf_counter()
    train_x, test_x = featurise(train), featurise(test)
    extract_s = time.perf_counter() - start
    task = Classification().fit_targets(train.labels)
    fitted = task.fit_probe(train_x, task.encode(train.labels), c=None, seed=seed)
    scores = task.decode(test_x @ fitted.weight.T + fitted.bias)
    metrics = task.metrics(test.labels, scores)
    return {"row": name, "features": label, "accuracy": round(100 * metrics["accuracy"], 1),
            "macro_f1": round(100 * metrics["macro_f1"], 1), "probe_c": fitted.info["probe_c"],
            "per_language": {lang: round(100 * r["recall"], 1) for lang, r in metrics["per_class"].items()},
            "features_s": round(extract_s, 1), "total_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated, of {', '.join([*ROWS, *FINETUNE_ROWS])}")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the fine-tuning rows")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "languages.json")
    args = parser.parse_args()

    if not (args.data / "speech" / "languages").is_dir():
        raise SystemExit(f"no speech/languages folder in {args.data}; pass --data")
    train, test = tasks.languages_split(tasks.languages(args.data), seed=args.seed)
    print(f"{len(train)} training and {len(test)} test words in {len(set(train.labels))} languages")
    rows = []
    for name in args.rows.split(","):
        row = probe_row(name, train, test, args.seed, args.epochs)
        rows.append(row)
        print(f"{name:<16} {row['accuracy']:5.1f} %  macro-F1 {row['macro_f1']:5.1f}  ({row['total_s']} s)  "
              + " ".join(f"{k}={v:.0f}" for k, v in row["per_language"].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # keep the rows measured in earlier runs, replacing those measured again
        done = {row["row"] for row in rows}
        rows = [row for row in json.loads(args.out.read_text())["rows"] if row["row"] not in done] + rows
    args.out.write_text(json.dumps({
        "split": "30 % of each language's words (files) kept aside at random, seed 0",
        "n_train": len(train), "n_test": len(test), "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "shared": True}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
