"""Multi-label and regression tasks on the Amazon multi-domain reviews, with frozen MiniLM features.

(a) multilabel: each review's two labels, its domain (books, dvd, electronics, kitchen) and its polarity
    (positive, negative), as one ``domain|polarity`` label set;
(b) regression: the star rating (1, 2, 4 or 5, the ``<rating>`` field) from the review text.

Each with transferkit's linear probe (``TransferEstimator(task=...)``) against a plain scikit-learn recipe
on the same cached features (one-vs-rest logistic regression with C by 5-fold cross-validation; RidgeCV),
on the same random 80/20 split; every choice is made on the training part only. A constant predictor
(the training mean; each label's training majority) is the floor. The transferkit rows' fit time includes
extracting the features on a first run (they are cached afterwards); the scikit-learn rows start from the
cached features.

    python benchmarks/tasks_amazon.py [--out benchmarks/results/tasks_amazon.json] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from transferkit import TransferEstimator
from transferkit.backbones import create_backbone
from transferkit.data import Samples, read_review_folder
from transferkit.evaluate import multilabel_metrics, regression_metrics
from transferkit.features import extract_features

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "amazon_reviews"
DOMAINS = ("books", "dvd", "electronics", "kitchen")
_RATING = re.compile(r"<rating>\s*([0-9.]+)\s*</rating>")


def read_reviews(root: Path) -> tuple[list[str], list[str], list[float]]:
    """Texts (as ``read_review_folder`` gives them, so cached features are shared), ``domain|polarity``
    label sets and star ratings of every labelled review."""
    texts, label_sets, ratings = [], [], []
    for domain in DOMAINS:
        samples = read_review_folder(root / domain)
        file_ratings = []
        for path in sorted((root / domain).glob("*.review")):
            if path.stem != "unlabeled":
                file_ratings += [float(r) for r in _RATING.findall(path.read_text(encoding="latin-1"))]
        if len(file_ratings) != len(samples):
            raise SystemExit(f"{root / domain}: {len(file_ratings)} ratings for {len(samples)} review texts")
        texts += samples.items
        label_sets += [f"{domain}|{polarity}" for polarity in samples.labels or []]
        ratings += file_ratings
    return texts, label_sets, ratings


def features(texts: list[str], batch_size: int) -> np.ndarray:
    """Frozen MiniLM features from transferkit's cache (the probe's fit extracted them already)."""
    samples = Samples(items=texts, labels=None, modality="text", origins=[f"review {i}" for i in range(len(texts))])
    return extract_features(create_backbone("minilm"), samples, batch_size=batch_size, progress=False)


def transferkit_row(task: str, train: tuple, test: tuple, batch_size: int, *info: str) -> dict:
    """transferkit's linear probe for ``task``: fit time, ``info`` keys of its strategy_info, test metrics."""
    (x_train, y_train), (x_test, y_test) = train, test
    start = time.perf_counter()
    est = TransferEstimator(backbone="minilm", task=task, batch_size=batch_size, progress=False)
    est.fit(x_train, y_train)
    fitted = time.perf_counter() - start
    return {"method": "transferkit linear_probe", "fit_seconds": fitted,
            **{key: est.strategy_info_.get(key) for key in info}, **est.evaluate(x_test, y_test)}


def multilabel_rows(train: tuple, test: tuple, batch_size: int) -> list[dict]:
    (x_train, y_train), (x_test, y_test) = train, test
    rows = [transferkit_row("multilabel", train, test, batch_size)]

    binarizer = MultiLabelBinarizer().fit([s.split("|") for s in y_train])
    t_train = binarizer.transform([s.split("|") for s in y_train])
    t_test = binarizer.transform([s.split("|") for s in y_test])
    f_train, f_test = features(x_train, batch_size), features(x_test, batch_size)
    start = time.perf_counter()
    recipe = make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegressionCV(Cs=10, cv=5, max_iter=2000, use_legacy_attributes=False)))
    recipe.fit(f_train, t_train)
    rows.append({"method": "sklearn OneVsRest(LogisticRegressionCV) on the same features",
                 "fit_seconds": time.perf_counter() - start,
                 **multilabel_metrics(t_test, recipe.predict(f_test), list(binarizer.classes_))})
    majority = np.tile((t_train.mean(axis=0) >= 0.5).astype(int), (len(t_test), 1))
    rows.append({"method": "constant (each label's training majority)", "fit_seconds": 0.0,
                 **multilabel_metrics(t_test, majority, list(binarizer.classes_))})
    return rows


def regression_rows(train: tuple, test: tuple, batch_size: int) -> list[dict]:
    (x_train, y_train), (x_test, y_test) = train, test
    rows = [transferkit_row("regression", train, test, batch_size, "probe_alpha")]

    f_train, f_test = features(x_train, batch_size), features(x_test, batch_size)
    start = time.perf_counter()
    recipe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 5, 17)))
    recipe.fit(f_train, np.asarray(y_train))
    rows.append({"method": "sklearn StandardScaler + RidgeCV on the same features",
                 "fit_seconds": time.perf_counter() - start,
                 "alpha": float(recipe[-1].alpha_), **regression_metrics(np.asarray(y_test), recipe.predict(f_test))})
    mean = np.full(len(y_test), float(np.mean(y_train)))
    rows.append({"method": "constant (training mean)", "fit_seconds": 0.0,
                 **regression_metrics(np.asarray(y_test), mean)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tasks_amazon.json")
    parser.add_argument("--limit", type=int, default=None, help="use only this many reviews (a quick check)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, label_sets, ratings = read_reviews(args.data)
    index = np.arange(len(texts))
    if args.limit:
        index = np.random.default_rng(args.seed).permutation(index)[: args.limit]
    train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=args.seed)

    def pick(values: list, idx: np.ndarray) -> list:
        return [values[i] for i in idx]

    split = {"train": len(train_idx), "test": len(test_idx), "seed": args.seed, "test_size": 0.2}
    results = {
        "data": str(args.data), "backbone": "minilm (frozen)", "split": split,
        "multilabel": multilabel_rows((pick(texts, train_idx), pick(label_sets, train_idx)),
                                      (pick(texts, test_idx), pick(label_sets, test_idx)), args.batch_size),
        "regression": regression_rows((pick(texts, train_idx), pick(ratings, train_idx)),
                                      (pick(texts, test_idx), pick(ratings, test_idx)), args.batch_size),
    }
    print(f"Amazon reviews, {split['train']} train / {split['test']} test, frozen minilm features")
    print(f"{'multilabel (domain|polarity)':<62} {'micro-F1':>8} {'macro-F1':>8} {'subset':>7} {'Hamming':>8} "
          f"{'fit s':>7}")
    for row in results["multilabel"]:
        print(f"{row['method']:<62} {row['micro_f1']:8.4f} {row['macro_f1']:8.4f} {row['subset_accuracy']:7.4f} "
              f"{row['hamming_loss']:8.4f} {row['fit_seconds']:7.1f}")
    print(f"{'regression (star rating)':<62} {'MSE':>8} {'MAE':>8} {'R²':>7} {'fit s':>8}")
    for row in results["regression"]:
        print(f"{row['method']:<62} {row['mse']:8.4f} {row['mae']:8.4f} {row['r2']:7.4f} {row['fit_seconds']:8.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
