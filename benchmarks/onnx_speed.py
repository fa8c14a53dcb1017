"""Inference throughput of PyTorch, ONNX (onnxruntime, float32) and int8 (dynamic quantisation) on this CPU,
one model per modality, with the accuracy of each on the same test split (the cost of int8).

Each model is a linear probe fitted on a training split: EfficientNet-Lite0 on hymenoptera (ants/bees,
244 train, 153 val), MiniLM on 1,000 SST-2 training sentences (scored on the 872 dev sentences), Whisper
tiny.en on FSDD (spoken digits: 5 training takes per speaker and digit; the official test split, takes
0-4). The run is exported with ``export_onnx(quantize=True)``; throughput is of the model alone
(backbone + head) on batches made once beforehand, median over repeats, at batch 1 and 32, with
``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads`` both at ``--threads``.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/onnx_speed.py --data ../shared/data \
        --out benchmarks/results/onnx_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tasks
from transferkit.data import Samples
from transferkit.estimator import TransferEstimator
from transferkit.export import export_onnx, load_engine
from transferkit.features import make_loader

ENGINES = ("torch", "onnx", "onnx-int8")


def splits(data: Path) -> dict[str, tuple[str, Samples, Samples]]:
    train_text, dev_text = tasks.sst2_subset(data, train_size=1000)
    train_audio, test_audio = tasks.fsdd_official_split(tasks.fsdd(data), train_takes=5)
    return {"image": ("efficientnet_lite0", *tasks.hymenoptera(data)), "text": ("minilm", train_text, dev_text),
            "audio": ("whisper_tiny_en", train_audio, test_audio)}


def batches(engine: Any, samples: Samples, batch_size: int, count: int) -> list[dict[str, torch.Tensor]]:
    loader = make_loader(samples.subset(list(range(min(len(samples), batch_size * count)))), engine.backbone, None,
                         train=False, batch_size=batch_size)
    return [batch for batch, _ in loader]


def throughput(engine: Any, made: list[dict[str, torch.Tensor]], repeats: int) -> float:
    """Items per second of ``engine.forward`` over the batches (median of ``repeats`` passes, after one warm-up)."""
    engine.forward(made[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in made:
            engine.forward(batch)
        times.append(time.perf_counter() - start)
    items = sum(len(next(iter(batch.values()))) for batch in made)
    return items / statistics.median(times)


def measure(modality: str, backbone: str, train: Samples, test: Samples, root: Path, args: argparse.Namespace
            ) -> dict[str, Any]:
    torch.manual_seed(0)
    run = TransferEstimator(backbone=backbone, progress=False).fit(train).save(root / modality)
    started = time.perf_counter()
    report = export_onnx(run, quantize=True)
    export_seconds = time.perf_counter() - started
    row: dict[str, Any] = {"backbone": backbone, "train": len(train), "test": len(test),
                           "export_seconds": round(export_seconds, 1),
                           "max_abs_diff_outputs": report["max_abs_diff_outputs"],
                           "int8_max_abs_diff_outputs": report["int8_max_abs_diff_outputs"],
                           "model_mb": {name: round(os.path.getsize(run / "onnx" / name) / 1e6, 1)
                                        for name in ("model.onnx", "model.int8.onnx")}, "engines": {}}
    reference = None
    for name in ENGINES:
        engine = load_engine(run, name)
        scores = engine.predict_scores(test)
        reference = scores if reference is None else reference
        metrics = engine.task.metrics(test.labels or [], scores)
        found = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                 "max_abs_diff_probabilities_vs_torch": float(np.abs(scores - reference).max()),
                 "agreement_with_torch": float((scores.argmax(1) == reference.argmax(1)).mean())}
        for size, count in ((1, args.batches_of_1), (32, args.batches_of_32)):
            found[f"items_per_s_batch_{size}"] = round(throughput(engine, batches(engine, test, size, count),
                                                                  args.repeats), 2)
        row["engines"][name] = found
        print(modality, name, json.dumps(found), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (../shared/data)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "onnx_speed.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches-of-1", type=int, default=32)
    parser.add_argument("--batches-of-32", type=int, default=3)
    parser.add_argument("--modalities", nargs="+", default=["image", "text", "audio"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_start": os.getloadavg()},
        "threads": args.threads, "torch": torch.__version__, "rows": {}}
    chosen = splits(args.data)
    with tempfile.TemporaryDirectory() as folder:
        for modality in args.modalities:
            results["rows"][modality] = measure(modality, *chosen[modality], Path(folder), args)
    results["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
