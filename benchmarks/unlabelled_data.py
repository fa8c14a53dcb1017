"""Loaders of the shared sets used by ``benchmarks/unlabelled.py``, converted to ``Samples`` here.

MR, TREC and SMS spam come in formats the library's readers do not take (one sentence per line per
class, ``LABEL:fine text`` lines, a headerless TSV); they are converted in memory rather than adding
readers for three one-off formats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transferkit.data import Samples, read_dataset


def _texts(texts: list[str], labels: list[str], origin: str) -> Samples:
    return Samples(items=texts, labels=labels, modality="text",
                   origins=[f"{origin} line {i + 1}" for i in range(len(texts))])


def sst2(data: Path, *, train_size: int, seed: int = 0) -> tuple[Samples, Samples]:
    """A random ``train_size`` subset of SST-2 train (for the supervised probe) and the 872 dev sentences."""
    root = data / "text" / "sst2"
    train = read_dataset(root / "train.tsv", on_error="fail")
    pick = np.random.default_rng(seed).choice(len(train), size=train_size, replace=False)
    return train.subset(np.sort(pick)), read_dataset(root / "dev.tsv", on_error="fail")


def mr(data: Path) -> Samples:
    """MR movie-review polarity: 5,331 positive and 5,331 negative sentences (latin-1)."""
    texts, labels = [], []
    for label in ("neg", "pos"):
        path = data / "text" / "senteval" / f"rt-polarity.{label}"
        lines = [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
        texts += lines
        labels += ["negative" if label == "neg" else "positive"] * len(lines)
    return _texts(texts, labels, "rt-polarity")


def trec(data: Path, split: str) -> Samples:
    """TREC question types, coarse label (the part before ':'); ``split`` is ``train`` or ``test``."""
    name = "train_5500.label" if split == "train" else "TREC_10.label"
    texts, labels = [], []
    for line in (data / "text" / "senteval" / name).read_text(encoding="latin-1").splitlines():
        if line.strip():
            tag, text = line.split(" ", 1)
            labels.append(tag.split(":", 1)[0])
            texts.append(text.strip())
    return _texts(texts, labels, name)


def sms_spam(data: Path) -> Samples:
    """UCI SMS spam: ``label<TAB>text`` lines, no header."""
    texts, labels = [], []
    for line in (data / "text" / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, text = line.split("\t", 1)
            labels.append(label)
            texts.append(text.strip())
    return _texts(texts, labels, "SMSSpamCollection")


def hymenoptera(data: Path) -> Samples:
    """All 398 ants/bees images, train and val together (clustering uses no split; one is a placeholder GIF)."""
    root = data / "images" / "hymenoptera"
    train, val = read_dataset(root / "train", on_error="fail"), read_dataset(root / "val", on_error="fail")
    return Samples(items=train.items + val.items, labels=(train.labels or []) + (val.labels or []),
                   modality="image", origins=train.origins + val.origins)


def fsdd(data: Path, *, per_class: int | None = None, seed: int = 0) -> Samples:
    """FSDD recordings labelled by digit; ``per_class`` draws a class-balanced random subset."""
    files = sorted((data / "speech" / "fsdd" / "recordings").glob("*.wav"))
    labels = [f.stem.split("_")[0] for f in files]
    samples = Samples(items=list(files), labels=labels, modality="audio", origins=[str(f) for f in files])
    if per_class is None:
        return samples
    rng = np.random.default_rng(seed)
    pick = [i for c in sorted(set(labels)) for i in rng.choice(
        [j for j, v in enumerate(labels) if v == c], size=per_class, replace=False)]
    return samples.subset(sorted(pick))


def sklearn_digits(side: int = 32) -> tuple[Samples, np.ndarray]:
    """scikit-learn's 1,797 bundled 8x8 digits, upscaled to ``side`` px grey images, and their raw pixels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = (digits.images / 16.0 * 255).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    images = [np.asarray(Image.fromarray(g).resize((side, side), Image.Resampling.BILINEAR)) for g in grey]
    samples = Samples(items=images, labels=[str(v) for v in digits.target], modality="image",
                      origins=[f"digits[{i}]" for i in range(len(images))])
    return samples, digits.data.astype(np.float32)


def mnist_subset(data: Path, *, per_class: int = 200, seed: int = 0) -> tuple[Samples, np.ndarray]:
    """``per_class`` random MNIST test digits per class as 28x28 grey images, and their raw pixels."""
    import gzip
    import pickle

    with gzip.open(data / "digits" / "mnist" / "mnist.pkl.gz", "rb") as f:
        _, _, (x, y) = pickle.load(f, encoding="latin1")  # a trusted, fixed file (see ../shared/data/README.md)
    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=per_class, replace=False)
                                   for c in range(10)]))
    images = [(x[i].reshape(28, 28) * 255).astype(np.uint8) for i in pick]
    samples = Samples(items=images, labels=[str(int(y[i])) for i in pick], modality="image",
                      origins=[f"mnist test[{i}]" for i in pick])
    return samples, x[pick].astype(np.float32)
