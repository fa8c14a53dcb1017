"""Feature-extraction throughput of each zoo backbone against this machine's limit.

For each backbone: the forward pass alone over a sweep of batch sizes (median of three timed passes), with
``channels_last`` beside it for the CNNs; the naive loop (decode, transform and forward one sample at a
time); ``extract_features`` as it runs by default (its batch size measured, ``throughput.py``) and at the
old fixed batch of 32, on one process with two threads; and ``extract_features`` on two processes of one
thread each (``torchrun``, the shards split between them, features checked against one process). Each
extraction runs on PyTorch and on the default engine (onnxruntime from
``throughput.MIN_ONNX_SAMPLES`` inputs on), with the onnxruntime forward swept by batch size too. The limit
is the backbone's FLOPs per sample (``torch.utils.flop_counter``) against the fp32 matrix-multiply rate
measured here on two threads. Inputs are generated in a temporary folder (224-px-class JPEGs, sentences,
5-s WAV clips).

    OMP_NUM_THREADS=2 nice -n 5 python benchmarks/extract_speed.py --out benchmarks/results/extract_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm", "mpnet", "whisper_tiny_en",
             "whisper_base"]
WORDS = (
    "the", "film", "was", "a", "quiet", "and", "careful", "portrait", "of", "a", "town", "that", "time",
    "forgot", "but", "the", "acting", "felt", "stiff", "and", "the", "ending", "dragged", "on", "far", "too",
    "long", "for", "anyone", "in", "the", "audience"
)


def make_inputs(folder: Path, modality: str, n: int) -> list[Any]:
    rng = np.random.default_rng(0)
    if modality == "text":
        return [" ".join(rng.choice(WORDS, size=24)) for _ in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        if modality == "image":
            base = rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8)
            path = folder / f"{i:04d}.jpg"
            Image.fromarray(base).resize((320, 240), Image.Resampling.BICUBIC).save(path, quality=90)
        else:
            t = np.arange(5 * 16000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(len(t))
            path = folder / f"{i:04d}.wav"
            wavfile.write(path, 16000, (wave * 32767).astype(np.int16))
        paths.append(path)
    return paths


def matmul_gflops(threads: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def flops_per_sample(backbone: Any, sample: Any) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    batch = backbone.collate([sample])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        backbone.forward_features(**batch)
    return float(counter.get_total_flops())


def timed(fn: Any, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep(backbone: Any, samples: list[Any], sizes: list[int], channels_last: bool) -> dict[int, float]:
    rates = {}
    model = backbone.to(memory_format=torch.channels_last) if channels_last else backbone
    for size in sizes:
        batch = backbone.collate([samples[i % len(samples)] for i in range(size)])
        if channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in batch.items()}
        with torch.inference_mode():
            rates[size] = size / timed(lambda b=batch: model.forward_features(**b))
    if channels_last:
        backbone.to(memory_format=torch.contiguous_format)
    return rates


def naive_loop(backbone: Any, items: list[Any]) -> float:
    from transferkit.features import decode_item

    def run() -> None:
        with torch.inference_mode():
            for item in items:
                backbone.forward_features(**backbone.collate([backbone.transform(decode_item(item, backbone))]))

    return len(items) / timed(run, repeats=1)


def extract_rate(backbone: Any, samples: Any, *, engine: str, batch_size: int | None) -> float:
    """``extract_features`` without the cache, on ``engine`` (``TRANSFERKIT_EXTRACT_ENGINE``), at its
    measured batch size (None) or at a fixed one; the warm-up call traces the ONNX graph, the timed ones
    reuse it."""
    from transferkit import features, throughput

    saved = throughput.fastest_batch_size
    os.environ[throughput.ENGINE_VARIABLE] = engine
    if batch_size is not None:
        throughput.fastest_batch_size = lambda _b, _e, most, **_: most  # the old behaviour: the size asked for
    try:
        return len(samples) / timed(lambda: features.extract_features(backbone, samples, batch_size=batch_size or 32,
                                                                      use_cache=False, progress=False), repeats=2)
    finally:
        throughput.fastest_batch_size = saved
        os.environ[throughput.ENGINE_VARIABLE] = "auto"


def onnx_sweep(backbone: Any, samples: list[Any], sizes: list[int]) -> tuple[dict[int, float], float]:
    """The forward pass on onnxruntime by batch size, and the seconds tracing and checking the graph took."""
    from transferkit.export.forward import onnx_features_forward

    start = time.perf_counter()
    forward = onnx_features_forward(backbone)
    trace_seconds = time.perf_counter() - start
    rates = {}
    for size in sizes:
        batch = backbone.collate([samples[i % len(samples)] for i in range(size)])
        rates[size] = size / timed(lambda b=batch: forward(b))
    return rates, trace_seconds


def two_processes(name: str, folder: Path, modality: str, n: int, reference: Path) -> dict[str, Any]:
    """``extract_features`` on two processes of one thread each, launched with torchrun."""
    result = folder / f"{name}.two.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, "--worker", name, "--folder", str(folder), "--modality", modality, "--count", str(n),
               "--result", str(result), "--reference", str(reference)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr[-600:]}
    return json.loads(result.read_text())


def worker(args: argparse.Namespace) -> None:
    from transferkit import distributed, features
    from transferkit.backbones import create_backbone
    from transferkit.data import samples_from_arrays
    from transferkit.features import extract_features

    torch.set_num_threads(1)
    # shards of an eighth of the inputs, so that the two processes share them out (with the default 2,048 a
    # few hundred inputs are one shard, which one process extracts while the other waits)
    features.SHARD_SIZE = max(1, args.count // 8)
    backbone = create_backbone(args.worker).eval()
    items = (make_inputs(args.folder, "text", args.count) if args.modality == "text"
             else sorted((args.folder / args.modality).iterdir())[:args.count])  # the parent's files, read only
    samples = samples_from_arrays(items, None, modality=args.modality)
    extract_features(backbone, samples, use_cache=False, progress=False)  # warm-up, and the batch size measured
    distributed.wait_for_everyone()
    start = time.perf_counter()
    features = extract_features(backbone, samples, use_cache=False, progress=False)
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - start
    if distributed.is_main_process():
        reference = np.load(args.reference)
        args.result.write_text(json.dumps({"rate": len(samples) / seconds, "processes": distributed.num_processes(),
                                           "max_abs_diff_vs_one_process": float(np.abs(features - reference).max())}))


def measure(name: str, folder: Path, n: int, threads: int, gflops: float, sizes: list[int]) -> dict[str, Any]:
    from transferkit.backbones import create_backbone
    from transferkit.data import samples_from_arrays
    from transferkit.features import BackboneDataset, extract_features

    torch.set_num_threads(threads)
    try:
        backbone = create_backbone(name).eval()
    except Exception as exc:  # noqa: BLE001  a weights package that is not installed: reported, not fatal
        return {"backbone": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    modality = backbone.modality
    items = make_inputs(folder / modality, modality, n)
    samples = samples_from_arrays(items, None, modality=modality)
    transformed = [BackboneDataset(samples, backbone, None, train=False)[i][0] for i in range(min(32, n))]
    flops = flops_per_sample(backbone, transformed[0])
    row: dict[str, Any] = {"backbone": name, "modality": modality, "gflops_per_sample": flops / 1e9,
                           "limit_per_s": gflops * 1e9 / flops}
    row["forward_by_batch"] = sweep(backbone, transformed, sizes, channels_last=False)
    if modality == "image":
        row["forward_by_batch_channels_last"] = sweep(backbone, transformed, sizes, channels_last=True)
    row["best_forward_batch"] = max(row["forward_by_batch"], key=row["forward_by_batch"].get)
    try:
        row["onnx_forward_by_batch"], row["onnx_trace_seconds"] = onnx_sweep(backbone, transformed, sizes)
    except Exception as exc:  # noqa: BLE001  reported: the backbone stays on PyTorch
        row["onnx_error"] = str(exc)[:300]
    row["naive_loop"] = naive_loop(backbone, items[:16])
    row["extract_torch"] = extract_rate(backbone, samples, engine="torch", batch_size=None)
    row["extract_torch_batch32"] = extract_rate(backbone, samples, engine="torch", batch_size=32)
    row["extract_default"] = extract_rate(backbone, samples, engine="auto", batch_size=None)
    reference = folder / f"{name}.npy"
    np.save(reference, extract_features(backbone, samples, use_cache=False, progress=False))
    row["extract_two_processes"] = two_processes(name, folder, modality, n, reference)
    row["fraction_of_limit"] = {key: row[key] / row["limit_per_s"] for key in ("naive_loop", "extract_torch",
                                                                             "extract_torch_batch32",
                                                                             "extract_default")}
    if "rate" in row["extract_two_processes"]:
        row["fraction_of_limit"]["extract_two_processes"] = row["extract_two_processes"]["rate"] / row["limit_per_s"]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--count", type=int, default=256, help="inputs per extraction (from 256 on, the default "
                        "engine is onnxruntime)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="1,4,16,32", help="batch sizes of the forward-only sweep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "extract_speed.json")
    parser.add_argument("--worker")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--modality")
    parser.add_argument("--result", type=Path)
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.worker:
        worker(args)
        return
    os.environ["TRANSFERKIT_CACHE"] = tempfile.mkdtemp(prefix="extract-speed-cache-")
    gflops = matmul_gflops(args.threads)
    print(f"fp32 matmul, {args.threads} threads: {gflops:.1f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="extract-speed-") as tmp:
        rows = [measure(name, Path(tmp), args.count, args.threads, gflops,
                        [int(v) for v in args.sizes.split(",")]) for name in args.backbones.split(",")]
    load = os.getloadavg()
    args.out.write_text(json.dumps({"matmul_gflops": gflops, "threads": args.threads, "n": args.count,
                                    "load_average": load, "cpus": os.cpu_count(), "torch": torch.__version__,
                                    "rows": rows}, indent=2))
    print(f"wrote {args.out} (load average {load[0]:.1f})")
    print(markdown(rows))


def markdown(rows: list[dict[str, Any]]) -> str:
    """The RESULTS.md table of the rows (inputs per second; the share of the limit of the best one-process
    extraction and of two processes)."""
    def rates(by_batch: dict[Any, float] | None) -> str:
        return ", ".join(f"{k}: {v:.3g}" for k, v in (by_batch or {}).items()) or "–"

    lines = ["| backbone | GFLOP / input | limit | forward by batch (torch) | `channels_last` | onnxruntime | "
             "naive loop | `extract_features` torch (batch 32) | default engine | 2 processes (max diff) | "
             "share of limit: default, 2 processes |", "|" + "---|" * 11]
    for row in rows:
        if "error" in row:
            continue
        two = row["extract_two_processes"]
        two_text = f"{two['rate']:.3g} ({two['max_abs_diff_vs_one_process']:.0e})" if "rate" in two else "failed"
        share = row["fraction_of_limit"]
        lines.append(f"| {row['backbone']} | {row['gflops_per_sample']:.2f} | {row['limit_per_s']:.3g} | "
                     f"{rates(row['forward_by_batch'])} | {rates(row.get('forward_by_batch_channels_last'))} | "
                     f"{rates(row.get('onnx_forward_by_batch'))} | {row['naive_loop']:.3g} | "
                     f"{row['extract_torch']:.3g} ({row['extract_torch_batch32']:.3g}) | "
                     f"{row['extract_default']:.3g} | "
                     f"{two_text} | {share['extract_default']:.0%}, {share.get('extract_two_processes', 0):.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
