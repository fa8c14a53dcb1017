"""Do transferability scores predict which backbone fine-tunes best? Kendall tau on shared tasks.

For each task, every candidate backbone (pretrained zoo entries of the task's modality and a
from-scratch baseline) is (1) scored by ``transferkit.select.rank_backbones`` on the training set,
from a cold feature cache, and (2) fine-tuned on the same training set with one protocol per task,
the same for every candidate (epochs, learning rate, batch size, image size: ``TASKS`` below, fixed
before any result was seen), then evaluated on the task's held-out split. Per task and score we
report Kendall's tau and weighted tau (scipy.stats) between the score and the accuracy reached, and
the time of ranking as a fraction of the time of fine-tuning all candidates.

    python benchmarks/rank.py --data ../shared/data                 # every task (tens of minutes)
    python benchmarks/rank.py --tasks fsdd,sst2                     # some tasks; others kept from the JSON
    python benchmarks/rank.py --only digits                         # one task in this process, JSON out
    python benchmarks/rank.py --report                              # rewrite the markdown from the JSON

Each task runs in its own process with its own empty feature cache. Timings are on shared,
contended CPU cores; ranking and fine-tuning of a task run back to back in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
IMAGES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "scratch:efficientnet_lite0"]

# One fine-tuning protocol per task, the same for every candidate. Small on purpose (2 shared cores).
TASKS: dict[str, dict[str, Any]] = {
    "fsdd": {"candidates": ["whisper_tiny_en", "whisper_base", "scratch:whisper_tiny_en"], "options": {},
             "epochs": 3, "lr": 1e-4, "batch_size": 16, "split": "test (200, official split)"},
    "digits": {"candidates": IMAGES, "options": {"image_size": 64, "hflip": False, "crop_scale": 0.8}, "epochs": 3,
               "lr": 5e-4, "batch_size": 16, "split": "300 held-out scans"},
    "sst2": {"candidates": ["minilm", "scratch:minilm"], "options": {"max_length": 32}, "epochs": 2, "lr": 1e-4,
             "batch_size": 32, "split": "dev (872)"},
    "hymenoptera": {"candidates": IMAGES, "options": {"image_size": 80}, "epochs": 2, "lr": 5e-4,
                    "batch_size": 16, "split": "val (153)"},
}


def load_task(task: str, data: Path) -> tuple[Any, Any, str]:
    """``(train, test, description)`` Samples of a shared task."""
    import tasks
    from transferkit.data import Samples

    if task == "hymenoptera":
        from PIL import Image

        def shrunk(samples: Samples) -> Samples:
            # decode and shrink the JPEGs once, so that every candidate and epoch skips it alike
            items = []
            for path in samples.items:
                image = Image.open(path).convert("RGB")
                image.thumbnail((192, 192))
                items.append(np.asarray(image))
            return Samples(items=items, labels=samples.labels, modality="image", origins=samples.origins)

        train, test = tasks.hymenoptera(data)
        return shrunk(train), shrunk(test), "244 train images (2 classes), shrunk to 192 px once"
    if task == "digits":
        train, test = tasks.sklearn_digits_split(n_train=200, n_test=300)
        return train, test, "scikit-learn digits 8x8: 200 train, 300 test (random, seed 0)"
    if task == "fsdd":
        # 5 train clips per (digit, speaker): indices 5..9 of the official training part
        train, test = tasks.fsdd_official_split(tasks.fsdd(data), train_takes=5)
        return train, test, "FSDD: 200 train clips (indices 5-9), official test split"
    if task == "sst2":
        train, dev = tasks.sst2_subset(data, train_size=500)
        return train, dev, "SST-2: 500 random train sentences (seed 0), dev set"
    raise SystemExit(f"unknown task {task!r}")


def correlations(scores: list[float | None], accuracies: list[float]) -> dict[str, Any]:
    """Kendall tau and weighted tau between a score and fine-tuned accuracy, over candidates with a score."""
    from scipy.stats import kendalltau, weightedtau

    # scores equal to 6 significant digits are ties: a saturated score (H-score at C - 1 when N < D)
    # must not be credited with an order that only floating-point noise decides
    pairs = [(float(f"{s:.6g}"), a) for s, a in zip(scores, accuracies, strict=True) if s is not None]
    if len(pairs) < 2:
        return {"n": len(pairs), "tau": None, "weighted_tau": None, "top1": None, "all_tied": False}
    x, y = np.array(pairs).T
    if np.all(x == x[0]):
        return {"n": len(pairs), "tau": None, "weighted_tau": None, "top1": None, "all_tied": True}
    tau = kendalltau(x, y).statistic
    wtau = weightedtau(x, y).statistic
    top1 = bool(y[int(np.argmax(x))] == y.max()) and int((x == x.max()).sum()) == 1
    return {"n": len(pairs), "tau": None if np.isnan(tau) else float(tau),
            "weighted_tau": None if np.isnan(wtau) else float(wtau), "top1": top1, "all_tied": False}


def task_correlations(row: dict[str, Any]) -> dict[str, Any]:
    """Correlations of every score of a task row with its fine-tuned accuracies."""
    names = list(row["candidates"][0]["scores"])
    accuracies = [c["accuracy"] for c in row["candidates"]]
    return {name: correlations([c["scores"][name] for c in row["candidates"]], accuracies) for name in names}


def run_task(task: str, data: Path) -> dict[str, Any]:
    from transferkit import TransferClassifier
    from transferkit.select import SCORES, parse_candidate, rank_backbones

    conf = TASKS[task]
    train, test, description = load_task(task, data)
    score_names = SCORES.names()
    ranking = rank_backbones(train, conf["candidates"], score_names, backbone_options=conf["options"],
                             progress=False)
    by_name = {row.candidate: row for row in ranking.rows}
    finetuned = []
    for candidate in conf["candidates"]:
        spec = parse_candidate(candidate, conf["options"])
        start = time.perf_counter()
        clf = TransferClassifier(backbone=spec.name, strategy="finetune", pretrained=spec.pretrained,
                                 backbone_options=conf["options"], epochs=conf["epochs"], lr=conf["lr"],
                                 batch_size=conf["batch_size"], progress=False, seed=0).fit(train)
        fit_seconds = time.perf_counter() - start
        accuracy = float(clf.evaluate(test)["accuracy"])
        finetuned.append({"candidate": candidate, "accuracy": accuracy, "fit_seconds": round(fit_seconds, 1)})
        print(f"{task:<12} {candidate:<28} fine-tuned acc {accuracy:.3f} in {fit_seconds:.0f}s", file=sys.stderr,
              flush=True)
    accuracies = [row["accuracy"] for row in finetuned]
    per_score = {name: correlations([by_name[c].scores[name] for c in conf["candidates"]], accuracies)
                 for name in score_names}
    finetune_seconds = sum(row["fit_seconds"] for row in finetuned)
    return {"task": task, "data": description, "split": conf["split"],
            "protocol": {k: conf[k] for k in ("options", "epochs", "lr", "batch_size")} | {"strategy": "finetune"},
            "candidates": [{**row, "scores": by_name[row["candidate"]].scores,
                            "rank_seconds": round(by_name[row["candidate"]].seconds, 1)} for row in finetuned],
            "correlations": per_score, "rank_seconds": round(ranking.seconds, 1),
            "finetune_seconds": round(finetune_seconds, 1),
            "rank_fraction": round(ranking.seconds / finetune_seconds, 3)}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_markdown(rows: list[dict[str, Any]], path: Path) -> None:
    from transferkit.select import DEFAULT_SCORE, SCORES

    names = SCORES.names()
    out = ["## Choosing the backbone before training (`transferkit rank`)", "",
           "Command: `python benchmarks/rank.py --data ../shared/data`. Each candidate is scored on the training "
           "set (cold feature cache), then fine-tuned (`finetune` strategy) on the same training set with one "
           "protocol per task, the same for every candidate, and evaluated on the held-out split. Timings on 2 "
           "shared, contended CPU cores.", ""]
    for row in rows:
        p = row["protocol"]
        out += [f"### {row['task']}: {row['data']}; accuracy on {row['split']}", "",
                f"Protocol: {p['epochs']} epochs, lr {p['lr']}, batch {p['batch_size']}, options {p['options']}. "
                f"Ranking took {row['rank_seconds']:.0f}s, fine-tuning all candidates {row['finetune_seconds']:.0f}s "
                f"(ranking = {100 * row['rank_fraction']:.0f}% of fine-tuning).", "",
                "| candidate | fine-tuned acc | fit (s) | " + " | ".join(names) + " |",
                "|---|---|---|" + "---|" * len(names)]
        for cand in sorted(row["candidates"], key=lambda c: -c["accuracy"]):
            cells = " | ".join(_fmt(cand["scores"][n], 3) for n in names)
            out.append(f"| {cand['candidate']} | {cand['accuracy']:.3f} | {cand['fit_seconds']:.0f} | {cells} |")
        out += ["", "| score | Kendall tau | weighted tau | picks the best |", "|---|---|---|---|"]
        for name in names:
            c = row["correlations"][name]
            top = "-" if c["top1"] is None else ("yes" if c["top1"] else "no")
            tied = " (all tied)" if c.get("all_tied") else ""
            out.append(f"| {name} (over {c['n']}){tied} | {_fmt(c['tau'])} | {_fmt(c['weighted_tau'])} | {top} |")
        out.append("")
    out += ["### Summary: Kendall tau per score and task", "",
            "| score | " + " | ".join(r["task"] for r in rows) + " | mean |", "|---|" + "---|" * (len(rows) + 1)]
    for name in names:
        taus = [r["correlations"][name]["tau"] for r in rows]
        known = [t for t in taus if t is not None]
        out.append(f"| {name}{' (default)' if name == DEFAULT_SCORE else ''} | "
                   + " | ".join(_fmt(t) for t in taus) + f" | {_fmt(float(np.mean(known)) if known else None)} |")
    out.append("")
    path.write_text("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", help="one task, run in this process; prints RESULT + JSON")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rank.json")
    parser.add_argument("--report", action="store_true", help="only rewrite the correlations and the markdown "
                                                                   "from the JSON")
    args = parser.parse_args()
    if args.report:
        rows = json.loads(args.out.read_text())
        for r in rows:
            r["correlations"] = task_correlations(r)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        write_markdown(rows, args.out.with_suffix(".md"))
        return
    if args.only:
        print("RESULT " + json.dumps(run_task(args.only, args.data)), flush=True)
        return
    rows: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    for task in args.tasks.split(","):
        cmd = [sys.executable, __file__, "--data", str(args.data), "--only", task]
        with tempfile.TemporaryDirectory() as cache:  # a cold feature cache: ranking times include extraction
            env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFERKIT_CACHE": cache}
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        result = next((line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
        if result is None:
            print(f"{task} failed (exit {proc.returncode})", file=sys.stderr)
            continue
        row = json.loads(result)
        rows = [r for r in rows if r["task"] != task] + [row]
        for r in rows:
            r["correlations"] = task_correlations(r)
        taus = ", ".join(f"{n} {_fmt(c['tau'])}" for n, c in row["correlations"].items())
        print(f"{task}: rank {row['rank_seconds']:.0f}s = {100 * row['rank_fraction']:.0f}% of fine-tuning; "
              f"tau: {taus}", flush=True)
        order = list(TASKS)
        rows.sort(key=lambda r: order.index(r["task"]) if r["task"] in order else 99)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        write_markdown(rows, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
