"""GPT-style decoder benchmarks: the packaged SmolLM2-135M-Instruct (``smollm2_135m``) as a classifier and a generator.

(a) classification, SST-2 (dev) and TREC (test): MiniLM's linear probe beside SmolLM2's linear probe (last-token
    features), LoRA (on q/k/v/o projections, with a new linear head), and ``label_words`` (the classes as words the
    decoder writes next), zero-shot and tuned with LoRA. Random training subsets of ``--train`` examples
    (stratified by class) and ``--eval`` evaluation examples (a random draw, seed 0), the same for every row.
(b) title generation on the Amazon kitchen reviews: the ``<title>`` from the ``<review_text>`` (its first
    ``REVIEW_CHARS`` characters), zero-shot against LoRA, ROUGE-L / chrF / exact match, training time and peak memory.
(c) the GGUF loading time (first read and a cached copy) and the peak memory of LoRA fine-tuning at a sequence length
    of 256 tokens.

Peak memory is the process's peak resident set size while the row ran (sampled every 0.1 s), which includes the
loaded model. Every setting is fixed before looking at evaluation results; no row is tuned on the evaluation split.

    nice -n 5 python benchmarks/decoder.py --part classification [--train 128 --eval 200]
    nice -n 5 python benchmarks/decoder.py --part generation [--train 96 --eval 48]
    nice -n 5 python benchmarks/decoder.py --part memory [--train 32]  (sequences of 256 tokens)
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import tasks
from transferkit import TransferClassifier, TransferEstimator
from transferkit.data import Samples

# ../shared/data of the checkout (a worktree sits one level deeper than the main checkout)
DATA = next(p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir())
RESULTS = Path(__file__).resolve().parent / "results"
REVIEW_CHARS = 600
TITLE_PROMPT = "Write a short title for this product review.\n\nReview: {review}"
# the label words and prompts, fixed before any run
SST2_WORDS = ("0=negative", "1=positive")
SST2_TEMPLATE = "Review: {text}\n\nIs the sentiment of this review {labels}? Answer with one word."
TREC_WORDS = ("ABBR=abbreviation", "DESC=description", "ENTY=entity", "HUM=person", "LOC=location", "NUM=number")
TREC_TEMPLATE = "Question: {text}\n\nWhat kind of answer does this question ask for: {labels}? Answer with one word."


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Samples this process's resident set size every 0.1 s; ``result["peak_mb"]`` is the peak while inside."""
    process, result, stop = psutil.Process(), {"peak_mb": 0.0}, threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak_mb"] = max(result["peak_mb"], process.memory_info().rss / 2**20)
            stop.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def draw(samples: Samples, size: int, seed: int, *, stratified: bool = False) -> Samples:
    """``size`` samples drawn at random (seed ``seed``); ``stratified``: every class in its share (a rare class,
    such as TREC's ABBR, is not left out of a small training draw)."""
    if stratified and size < len(samples):
        from sklearn.model_selection import train_test_split

        pick, _ = train_test_split(np.arange(len(samples)), train_size=size, random_state=seed,
                                   stratify=np.asarray(samples.labels))
    else:
        pick = np.random.default_rng(seed).choice(len(samples), size=min(size, len(samples)), replace=False)
    return samples.subset(np.sort(pick))


def classification_sets(train_size: int, eval_size: int) -> dict[str, tuple[Samples, Samples, tuple, str]]:
    sst2_train, sst2_dev = tasks.sst2(DATA)
    trec_train, trec_test = tasks.trec(DATA, "train"), tasks.trec(DATA, "test")
    return {"SST-2": (draw(sst2_train, train_size, 0, stratified=True), draw(sst2_dev, eval_size, 0), SST2_WORDS,
                      SST2_TEMPLATE),
            "TREC": (draw(trec_train, train_size, 0, stratified=True), draw(trec_test, eval_size, 0), TREC_WORDS,
                     TREC_TEMPLATE)}


def timed_row(make: Callable[[], Any], train: Samples, test: Samples, *, new_tokens: int | None = None,
              **info: Any) -> dict[str, Any]:
    with peak_rss() as memory:
        start = time.perf_counter()
        est = make().fit(train)
        fit_seconds = time.perf_counter() - start
        if new_tokens is not None:
            est.task_.set_generation(max_new_tokens=new_tokens)
        start = time.perf_counter()
        metrics = est.evaluate(test)
        eval_seconds = time.perf_counter() - start
    row = {**info, "fit_s": round(fit_seconds, 1), "eval_s": round(eval_seconds, 1),
           "peak_rss_mb": round(memory["peak_mb"]), "train": len(train), "eval": len(test)}
    keep = ("accuracy", "macro_f1", "exact_match", "rouge_l", "chrf")
    row.update({k: round(float(v), 4) for k, v in metrics.items() if k in keep})
    if "zero_shot" in metrics:
        row["zero_shot"] = {k: round(float(v), 4) for k, v in metrics["zero_shot"].items() if k in keep}
    print(json.dumps(row), flush=True)
    return row


def classification(train_size: int, eval_size: int,
                   save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, (train, test, words, template) in classification_sets(train_size, eval_size).items():
        common = {"progress": False, "batch_size": 16, "seed": 0}
        decoder = {"backbone": "smollm2_135m", "backbone_options": {"max_length": 128}, **common}
        label_params = {"words": words, "template": template}
        runs = [
            ("linear_probe", {"backbone": "minilm", **common}),
            ("linear_probe", decoder),
            ("lora (r=8, 2 epochs)", {**decoder, "strategy": "lora", "epochs": 2}),
            ("label_words zero-shot", {**decoder, "strategy": "label_words",
                                       "strategy_params": {**label_params, "zero_shot": True}}),
            ("label_words + LoRA (r=8, 2 epochs)", {**decoder, "strategy": "label_words", "epochs": 2,
                                                    "strategy_params": label_params}),
        ]
        for strategy, settings in runs:
            rows.append(timed_row(lambda s=settings: TransferClassifier(**s), train, test, dataset=name,
                                  backbone=settings["backbone"], strategy=strategy))
            save(rows)  # a long run keeps what it measured
    return rows


def title_pairs(root: Path) -> tuple[list[str], list[str], list[str]]:
    """``(prompts, titles, origins)`` of every kitchen review with a title and a text."""
    prompts, titles, origins = [], [], []
    field = re.compile(r"<(title|review_text)>\s*(.*?)\s*</\1>", re.S)
    for path in sorted(root.glob("*.review")):
        for n, block in enumerate(path.read_text(encoding="latin-1").split("</review>")):
            found = dict(field.findall(block))
            title, text = found.get("title", "").strip(), " ".join(found.get("review_text", "").split())
            if title and text:
                prompts.append(TITLE_PROMPT.format(review=text[:REVIEW_CHARS]))
                titles.append(title)
                origins.append(f"{path.name} review {n + 1}")
    return prompts, titles, origins


def generation(train_size: int, eval_size: int) -> list[dict[str, Any]]:
    prompts, titles, origins = title_pairs(DATA / "text" / "amazon_reviews" / "kitchen")
    order = np.random.default_rng(0).permutation(len(prompts))
    train_idx, test_idx = order[:train_size], order[train_size:train_size + eval_size]

    def samples(idx: np.ndarray) -> Samples:
        return Samples(items=[prompts[i] for i in idx], labels=[titles[i] for i in idx], modality="text",
                       origins=[origins[i] for i in idx])

    make = lambda: TransferEstimator("smollm2_135m", "lora", task="generation", epochs=2, batch_size=8,  # noqa: E731
                                     backbone_options={"max_length": 256}, progress=False, seed=0)
    return [timed_row(make, samples(train_idx), samples(test_idx), new_tokens=24, dataset="Amazon kitchen titles",
                      backbone="smollm2_135m", strategy="lora (r=8, 2 epochs); greedy, 24 new tokens at most")]


def memory(sequences: int) -> list[dict[str, Any]]:
    from transferkit.backbones import create_backbone

    start = time.perf_counter()
    create_backbone("smollm2_135m")
    first = time.perf_counter() - start
    start = time.perf_counter()
    backbone = create_backbone("smollm2_135m")
    second = time.perf_counter() - start
    prompts, titles, _ = title_pairs(DATA / "text" / "amazon_reviews" / "kitchen")
    joined = [" ".join(prompts[i:i + 4]) for i in range(0, 4 * sequences, 4)]  # four reviews: over 256 tokens each
    long = [text for text in joined if len(backbone.token_ids(text)) > 256]
    train = Samples(items=long, labels=["ab"[i % 2] for i in range(len(long))], modality="text",
                    origins=[f"review {i}" for i in range(len(long))])
    del backbone
    rows = [{"measure": "GGUF load, first in the process (read + de-quantise)", "seconds": round(first, 1)},
            {"measure": "GGUF load, again (copy of the cached weights)", "seconds": round(second, 1)}]
    for batch_size in (8,):
        with peak_rss() as peak:
            start = time.perf_counter()
            TransferClassifier("smollm2_135m", "lora", epochs=1, batch_size=batch_size, progress=False,
                               val_fraction=0.0, backbone_options={"max_length": 256}).fit(train)
            seconds = time.perf_counter() - start
        rows.append({"measure": f"LoRA fit, 256 tokens, batch {batch_size}, {len(long)} sequences, 1 epoch",
                     "peak_rss_mb": round(peak["peak_mb"]), "seconds": round(seconds, 1)})
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("classification", "generation", "memory"), required=True)
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--eval", type=int, default=None)
    parser.add_argument("--machine", default="", help="a note on the machine's state, kept in the JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"decoder_{args.part}.json"

    def save(rows: list[dict[str, Any]]) -> None:
        out.write_text(json.dumps({"part": args.part, "rows": rows, "machine": args.machine,
                                   "seconds": round(time.perf_counter() - start)}, indent=2) + "\n")

    if args.part == "classification":
        rows = classification(args.train or 128, args.eval or 200, save)
    elif args.part == "generation":
        rows = generation(args.train or 96, args.eval or 48)
    else:
        rows = memory(args.train or 32)
    save(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
