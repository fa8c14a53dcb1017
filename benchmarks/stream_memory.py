"""Peak memory of streaming prediction (``transferkit predict RUN FOLDER --out predictions.csv``) over 20,000
files, against 2,000 files: bounded memory means the same peak for ten times the inputs.

The inputs are 20,000 small PNG images (32 × 32, two classes of blobs) generated in a temporary folder, never
in the repository. The run is ``lenet`` fitted from scratch with a linear probe on 64 of them: the point is
what grows with the number of inputs (listing, decoding in two DataLoader workers, rows appended to the CSV),
which a larger backbone would only make slower. Each command is timed from outside by ``farm-bench`` (the
peak is the largest single process: the main process or one of its decoding workers), three runs each,
medians reported; each run starts from an empty CSV.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/stream_memory.py --out benchmarks/results/stream_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        if i % 2:
            image[:16, :16] = 230
        else:
            image[16:, 16:] = 230
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:05d}.png")


def farm_bench(command: list[str], runs: int, before: str) -> dict[str, float]:
    """Median (and min, max) wall seconds and peak MiB of ``command`` over ``runs`` runs."""
    script = f"{before}; exec {' '.join(command)} >/dev/null 2>&1"
    done = subprocess.run(["farm-bench", "-n", str(runs), "--warmup", "0", "--timeout", "3000", "--",
                           "sh", "-c", script], capture_output=True, text=True, check=True)
    figures = {}
    for key, label in (("wall_s", "A wall s"), ("peak_mib", "A peak MiB")):
        line = next(line for line in done.stdout.splitlines() if line.startswith(label))
        low, median, high = (float(v) for v in re.findall(r"[\d.]+", line[len(label):])[:3])
        figures[key], figures[f"{key}_min"], figures[f"{key}_max"] = median, low, high
    figures["farm_bench_first_line"] = done.stdout.splitlines()[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_memory.json")
    args = parser.parse_args()
    env_path = f"PYTHONPATH={ROOT / 'src'}"
    with tempfile.TemporaryDirectory(prefix="stream-memory-") as tmp:
        work = Path(tmp)
        make_images(work / "all", args.files)
        small = work / "small"
        small.mkdir()
        for sub in sorted((work / "all").iterdir())[: max(1, args.files // 10000)]:  # a tenth of the files
            shutil.copytree(sub, small / sub.name)
        small_count = sum(1 for _ in small.rglob("*.png"))
        train = work / "train"
        for i, png in enumerate(sorted((work / "all").rglob("*.png"))[:64]):
            (train / ("br" if i % 2 == 0 else "tl")).mkdir(parents=True, exist_ok=True)
            shutil.copy(png, train / ("br" if i % 2 == 0 else "tl") / png.name)
        run = work / "run"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TRANSFERKIT_CACHE": str(work / "cache")}
        subprocess.run([sys.executable, "-m", "transferkit", "fit", str(train), "--out", str(run), "--backbone",
                        "lenet", "--from-scratch", "--strategy", "linear_probe"], env=env, check=True,
                       capture_output=True)
        csv = work / "predictions.csv"
        rows = {}
        for name, folder, count in (("stream", small, small_count), ("stream", work / "all", args.files)):
            command = [sys.executable, "-m", "transferkit", "predict", str(run), str(folder), "--out", str(csv)]
            before = f"rm -f {csv} {csv}.skipped.csv; export {env_path} TRANSFERKIT_CACHE={work / 'cache'}"
            rows[f"{name}_{count}"] = {"files": count, **farm_bench(command, args.runs, before)}
            written = sum(1 for _ in csv.open()) - 1
            assert written == count, f"{written} rows for {count} files"
            print(name, count, rows[f"{name}_{count}"], flush=True)
    args.out.write_text(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "runs": args.runs,
                                    "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
