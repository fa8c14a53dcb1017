"""Load test of ``transferkit serve`` on loopback: throughput, latency, bad payloads and the server's memory.

For each model (EfficientNet-Lite0 on hymenoptera, MiniLM on SST-2; linear probes), the server runs as its
own process (``python -m transferkit serve RUN --engine ENGINE``, 127.0.0.1, an API key), and a separate
client process (this script with ``--client``) sends a fixed number of requests from a fixed number of
threads, within a time limit:

The load is sent ``--rounds`` times (``--requests / rounds`` each time), so that memory which is only
filling up (onnxruntime's arena grows to the largest micro-batch it has seen) is told apart from a leak:

* ``batch 1``: single-input ``POST /predict`` (real hymenoptera val images, SST-2 dev sentences);
* ``batch endpoint``: an eighth as many ``POST /predict/batch`` of 8 inputs each;
* ``bad payloads``: corrupt and truncated images, an empty file, wrong content types, malformed JSON, a body
  over the limit, too many inputs, a missing API key; each must get a 4xx.

Requests per second, p50/p99 latency and errors (any non-200 on good requests) are counted by the client.
This process samples the server's resident memory (psutil) every 0.25 s and notes it after the warm-up and
after each round.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/serve_load.py --data ../shared/data \
        --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

KEY = "load-test-key"
BATCH = 8


# -- the client process ---------------------------------------------------------------------------------------
def client(args: argparse.Namespace) -> None:
    import httpx

    inputs = json.loads(Path(args.client_inputs).read_text())
    modality = inputs["modality"]
    files = [Path(p).read_bytes() for p in inputs.get("files", [])]
    texts = inputs.get("texts", [])
    headers = {"X-API-Key": KEY}
    deadline = time.monotonic() + args.time_limit

    def single(i: int) -> dict[str, Any]:
        if modality == "text":
            return {"json": {"text": texts[i % len(texts)]}}
        return {"files": {"file": (f"{i}.jpg", files[i % len(files)])}}

    def batched(i: int) -> dict[str, Any]:
        if modality == "text":
            return {"json": {"texts": [texts[(i * BATCH + j) % len(texts)] for j in range(BATCH)]}}
        return {"files": [("files", (f"{j}.jpg", files[(i * BATCH + j) % len(files)])) for j in range(BATCH)]}

    with httpx.Client(base_url=args.client, timeout=180, headers=headers) as http:
        for i in range(4):  # warm-up, not counted
            http.post("/predict", **single(i))
        print(json.dumps({"event": "warm"}), flush=True)
        found: dict[str, Any] = {}
        for round_number in range(1, args.rounds + 1):  # the same load again: bounded memory stops growing
            per_round = max(1, args.requests // args.rounds)
            phases = {"batch 1": ("/predict", single, per_round),
                      "batch endpoint": ("/predict/batch", batched, max(1, per_round // BATCH))}
            for phase, (path, body, count) in phases.items():
                found.setdefault(phase, []).append(run_phase(http, path, body, count, args.concurrency, deadline))
            print(json.dumps({"event": f"round {round_number}"}), flush=True)
        found["bad payloads"] = bad_payloads(http, modality, files)
    print(json.dumps({"event": "done", "result": found}), flush=True)


def run_phase(http: Any, path: str, body: Any, count: int, concurrency: int, deadline: float) -> dict[str, Any]:
    """``count`` requests from ``concurrency`` threads (none after ``deadline``): rate, latency, errors."""
    import httpx

    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        if time.monotonic() > deadline:
            return
        start = time.perf_counter()
        try:
            status = http.post(path, **body(i)).status_code
        except httpx.HTTPError:
            status = -1
        with lock:
            latencies.append(time.perf_counter() - start)
            statuses.append(status)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(count)))
    wall = time.perf_counter() - started
    per_request = BATCH if path.endswith("batch") else 1
    return {"requests": len(statuses), "planned": count, "inputs_per_request": per_request,
            "seconds": round(wall, 2), "requests_per_s": round(len(statuses) / wall, 2),
            "inputs_per_s": round(len(statuses) * per_request / wall, 2),
            "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies else None,
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1) if latencies else None,
            "errors": sum(s != 200 for s in statuses)}


def bad_payloads(http: Any, modality: str, files: list[bytes]) -> dict[str, Any]:
    """Malformed requests and the status each got: all must be 4xx."""
    good = files[0] if files else b""
    cases: dict[str, dict[str, Any]] = {
        "malformed JSON": {"content": b"{not json", "headers": {"content-type": "application/json"}},
        "JSON of the wrong shape": {"json": {"txt": 5}},
        "body over the limit": {"content": b"x" * 3_000_000, "headers": {"content-type": "application/json"}},
        "no API key": {"json": {"text": "fine"}, "headers": {"X-API-Key": ""}},
        "too many inputs": ({"json": {"texts": ["fine"] * 65}} if modality == "text"
                            else {"files": [("files", (f"{i}.jpg", good)) for i in range(65)]}),
    }
    if modality == "text":
        cases["an upload to a text model"] = {"files": {"file": ("a.jpg", good or b"\xff\xd8")}}
        cases["an empty text"] = {"json": {"text": ""}}
    else:
        cases.update({"corrupt image": {"files": {"file": ("junk.jpg", b"\x00not an image" * 50)}},
                      "truncated image": {"files": {"file": ("cut.jpg", good[: len(good) // 3])}},
                      "empty file": {"files": {"file": ("empty.jpg", b"")}},
                      "JSON to an image model": {"json": {"text": "a photo"}}})
    statuses = {}
    for name, request in cases.items():
        path = "/predict/batch" if name == "too many inputs" else "/predict"
        try:
            statuses[name] = http.post(path, **request).status_code
        except Exception as exc:  # noqa: BLE001 - a dropped connection counts as a failure of the server
            statuses[name] = f"{type(exc).__name__}"
    return {"statuses": statuses, "all_4xx": all(isinstance(s, int) and 400 <= s < 500 for s in statuses.values())}


# -- the driver ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fitted_runs(data: Path, root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    import torch

    import tasks
    from transferkit.estimator import TransferEstimator
    from transferkit.export import export_onnx

    train_images, val_images = tasks.hymenoptera(data)
    train_text, dev_text = tasks.sst2_subset(data, train_size=500)
    made = {}
    for modality, backbone, train, inputs in (
            ("image", "efficientnet_lite0", train_images, {"files": [str(p) for p in val_images.items[:64]]}),
            ("text", "minilm", train_text, {"texts": list(dev_text.items[:256])})):
        run = root / modality
        if not (run / "onnx" / "model.onnx").is_file():
            torch.manual_seed(0)
            TransferEstimator(backbone=backbone, progress=False).fit(train).save(run, overwrite=True)
            export_onnx(run, overwrite=True)
        made[modality] = (run, {"modality": modality, **inputs})
    return made


def load_test(run: Path, inputs: dict[str, Any], engine: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import psutil

    port = _free_port()
    env = {**os.environ, "TRANSFERKIT_API_KEY": KEY}
    server = subprocess.Popen(["nice", "-n", "5", sys.executable, "-m", "transferkit", "serve", str(run), "--port",
                               str(port), "--engine", engine, "--max-body-mb", "2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    samples: list[tuple[float, float]] = []
    try:
        _wait_up(url, server)
        process = psutil.Process(server.pid)
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.is_set():
                samples.append((round(time.monotonic() - start, 2), process.memory_info().rss / 2**20))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        (work / f"inputs-{port}.json").write_text(json.dumps(inputs))
        command = [sys.executable, __file__, "--client", url, "--client-inputs", str(work / f"inputs-{port}.json"),
                   "--requests", str(args.requests), "--concurrency", str(args.concurrency), "--time-limit",
                   str(args.time_limit), "--rounds", str(args.rounds)]
        marks: dict[str, int] = {}
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as driver:
            assert driver.stdout is not None
            result = None
            for line in driver.stdout:
                event = json.loads(line)
                if event["event"] == "done":
                    result = event["result"]
                marks[event["event"]] = len(samples)
            driver.wait(timeout=args.time_limit + 120)
        stop.set()
        sampler.join()
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    rss = [mb for _, mb in samples]

    def at(event: str) -> float | None:
        index = marks.get(event)
        return None if index is None or not rss else round(rss[min(index, len(rss)) - 1], 1)

    return {"engine": engine, "result": result, "server_alive_after": alive,
            "rss_mb": {"after_warm_up": at("warm"),
                       **{f"after_round_{n}": at(f"round {n}") for n in range(1, args.rounds + 1)},
                       "peak": round(max(rss), 1), "end": round(rss[-1], 1), "samples": len(rss),
                       "trace": [(t, round(mb, 1)) for t, mb in samples[:: max(1, len(samples) // 40)]]}}


def _wait_up(url: str, server: subprocess.Popen[str]) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped: {server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not come up in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    parser.add_argument("--runs", type=Path, help="folder for the fitted runs (kept between invocations)")
    parser.add_argument("--engines", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="the load is sent this many times, --requests in all")
    parser.add_argument("--models", nargs="+", default=["image", "text"])
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds per model and engine")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--client-inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args)
        return
    if args.data is None:
        parser.error("--data is required")
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "shared": "2 cores shared by 8 agents", "server": "OMP_NUM_THREADS as given, nice -n 5"},
        "settings": {"requests": args.requests, "rounds": args.rounds, "concurrency": args.concurrency,
                     "batch_endpoint_inputs": BATCH,
                     "time_limit_s": args.time_limit, "max_wait_ms": 5, "max_batch": 64, "max_body_mb": 2}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = fitted_runs(args.data, args.runs or Path(tmp) / "runs")
        for modality, (run, inputs) in runs.items():
            if modality not in args.models:
                continue
            for engine in args.engines:
                row = {"model": modality, **load_test(run, inputs, engine, args, Path(tmp))}
                results["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "rss_mb"}),
                      json.dumps({k: v for k, v in row["rss_mb"].items() if k != "trace"}), flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
