"""The task loaders of the benchmark scripts: each shared set of ``../shared/data`` read in one place.

Every script imports them from here (``import tasks``; a script's own folder is on ``sys.path``), so a
split or a sampling seed that a RESULTS.md row depends on is written once. The subsets keep the exact
draws the rows were measured with (generator, seed, sorted or not).

MR, TREC and SMS spam come in formats the library's readers do not take (one sentence per line per
class, ``LABEL:fine text`` lines, a headerless TSV); they are converted in memory rather than adding
readers for three one-off formats.
"""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path

import numpy as np

from transferkit.data import Samples, read_dataset


def _texts(texts: list[str], labels: list[str], origin: str) -> Samples:
    return Samples(items=texts, labels=labels, modality="text",
                   origins=[f"{origin} line {i + 1}" for i in range(len(texts))])


# --- text -------------------------------------------------------------------------------------------

def sst2(data: Path) -> tuple[Samples, Samples]:
    """SST-2's 67,349 training phrases and its 872 dev sentences."""
    root = data / "text" / "sst2"
    return read_dataset(root / "train.tsv", on_error="fail"), read_dataset(root / "dev.tsv", on_error="fail")


def sst2_subset(data: Path, *, train_size: int, seed: int = 0, sort: bool = False) -> tuple[Samples, Samples]:
    """A random ``train_size`` subset of SST-2 train (in the order drawn, or ``sort``-ed) and the dev sentences."""
    train, dev = sst2(data)
    pick = np.random.default_rng(seed).choice(len(train), size=train_size, replace=False)
    return train.subset(np.sort(pick) if sort else pick), dev


def sst2_held_out(data: Path, *, n_fit: int = 2000, n_score: int = 1000) -> tuple[Samples, Samples]:
    """``(fit_on, score_on)``, both from SST-2 train: the ``n_fit`` sentences of ``sst2_subset`` (seed 0) and
    ``n_score`` others (seed 1), to choose settings without looking at dev."""
    train, _ = sst2(data)
    order = np.random.default_rng(0).choice(len(train), size=n_fit, replace=False)
    rest = np.setdiff1d(np.arange(len(train)), order)
    held_out = np.random.default_rng(1).choice(rest, size=n_score, replace=False)
    return train.subset(order), train.subset(held_out)


AMAZON_DOMAINS = {"books": "books", "dvd": "dvd", "elec": "electronics", "kitchen": "kitchen"}


def amazon_reviews(data: Path, domain: str) -> Samples:
    """One domain of the multi-domain Amazon reviews (``books``, ``dvd``, ``elec``/``electronics``,
    ``kitchen``), positives first: the order the feature cache of the rows was filled in."""
    from transferkit.data import read_review_folder

    reviews = read_review_folder(data / "text" / "amazon_reviews" / AMAZON_DOMAINS.get(domain, domain))
    return reviews.subset(sorted(range(len(reviews)), key=lambda i: reviews.labels[i] != "positive"))


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


# --- images -----------------------------------------------------------------------------------------

def hymenoptera(data: Path) -> tuple[Samples, Samples]:
    """The ants/bees images: 244 train and 153 val (one train file is a placeholder GIF)."""
    root = data / "images" / "hymenoptera"
    return read_dataset(root / "train", on_error="fail"), read_dataset(root / "val", on_error="fail")


def hymenoptera_all(data: Path) -> Samples:
    """All 398 ants/bees images, train and val together (clustering uses no split)."""
    train, val = hymenoptera(data)
    return Samples(items=train.items + val.items, labels=(train.labels or []) + (val.labels or []),
                   modality="image", origins=train.origins + val.origins)


# --- speech -----------------------------------------------------------------------------------------

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


def fsdd_fields(samples: Samples) -> list[tuple[str, str, int]]:
    """``(digit, speaker, take)`` of each FSDD recording, from its file name ``DIGIT_SPEAKER_TAKE.wav``."""
    fields = [Path(item).stem.split("_") for item in samples.items]
    return [(digit, speaker, int(take)) for digit, speaker, take in fields]


def fsdd_official_split(samples: Samples, *, train_takes: int | None = None) -> tuple[Samples, Samples]:
    """FSDD's official split: takes 0-4 of each digit and speaker are the test set, the rest train;
    ``train_takes`` keeps only that many train takes per digit and speaker (takes 5 to 5 + N - 1)."""
    takes = [take for _, _, take in fsdd_fields(samples)]
    last = math.inf if train_takes is None else 5 + train_takes
    return (samples.subset([i for i, t in enumerate(takes) if 5 <= t < last]),
            samples.subset([i for i, t in enumerate(takes) if t < 5]))


def languages(data: Path) -> Samples:
    """The KTuberling words: 1,367 FLAC clips in 13 languages, labelled by their folder (``en``, ``fr``, ...).

    Each file of a language is a different word, so a split by file keeps the test words out of training."""
    root = data / "speech" / "languages"
    files = sorted(root.glob("*/*.flac"))
    return Samples(items=list(files), labels=[f.parent.name for f in files], modality="audio",
                   origins=[str(f) for f in files])


def languages_split(samples: Samples, *, test_fraction: float = 0.3, seed: int = 0) -> tuple[Samples, Samples]:
    """``(train, test)``: ``test_fraction`` of each language's words (files) kept aside, drawn at random."""
    labels = np.array(samples.labels)
    rng = np.random.default_rng(seed)
    test = sorted(int(i) for lang in sorted(set(labels)) for i in rng.permutation(np.flatnonzero(labels == lang))
                  [: round(test_fraction * int((labels == lang).sum()))])
    train = sorted(set(range(len(samples))) - set(test))
    return samples.subset(train), samples.subset(test)


# --- digits -----------------------------------------------------------------------------------------

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


def sklearn_digits_split(*, n_train: int = 200, n_test: int = 300, seed: int = 0) -> tuple[Samples, Samples]:
    """scikit-learn's 8x8 digits as 8x8 RGB images (grey values x16), a random ``(train, test)`` split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    order = np.random.default_rng(seed).permutation(len(images))
    labels = digits.target.astype(str)

    def part(idx: np.ndarray) -> Samples:
        return Samples(items=[np.repeat(images[i][:, :, None], 3, axis=2) for i in idx],
                       labels=[labels[i] for i in idx], modality="image", origins=[f"digits[{i}]" for i in idx])

    return part(order[:n_train]), part(order[n_train:n_train + n_test])


def read_mnist(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST's training and test splits as ``(N, 28, 28)`` floats in [0, 1] and integer labels."""
    with gzip.open(data / "digits" / "mnist" / "mnist.pkl.gz", "rb") as f:
        train, _valid, test = pickle.load(f, encoding="latin1")  # a trusted, fixed file (../shared/data/README.md)
    return {split: (x.reshape(-1, 28, 28).astype(np.float32), y.astype(int))
            for split, (x, y) in (("train", train), ("test", test))}


def read_usps(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """USPS as ``(N, 28, 28)`` floats in [0, 1]: rows "label v1..v256" in [-1, 1], padded by 6 pixels
    each side as SKADA-Bench does (``transforms.Pad(6)``), background 0 like MNIST."""
    splits = {}
    for split in ("train", "test"):
        rows = np.loadtxt(data / "digits" / "usps" / f"zip.{split}.gz", dtype=np.float32)
        images = (rows[:, 1:].reshape(-1, 16, 16) + 1.0) / 2.0
        splits[split] = (np.pad(images, ((0, 0), (6, 6), (6, 6))), rows[:, 0].astype(int))
    return splits


def mnist_subset(data: Path, *, per_class: int = 200, seed: int = 0) -> tuple[Samples, np.ndarray]:
    """``per_class`` random MNIST test digits per class as 28x28 grey images, and their raw pixels."""
    x, y = read_mnist(data)["test"]
    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=per_class, replace=False)
                                   for c in range(10)]))
    images = [(x[i] * 255).astype(np.uint8) for i in pick]
    samples = Samples(items=images, labels=[str(int(y[i])) for i in pick], modality="image",
                      origins=[f"mnist test[{i}]" for i in pick])
    return samples, x[pick].reshape(len(pick), -1)


# --- precomputed features ---------------------------------------------------------------------------

def _mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    m = loadmat(path)
    return m["fts"].astype(np.float64), m["labels"].ravel().astype(np.int64)


def office_caltech_surf(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Office-Caltech10's 800-d SURF bags of visual words per domain (C, A, W, D): ``(features, labels)``."""
    folder = data / "features" / "office_caltech10_surf"
    files = {"C": "Caltech10", "A": "amazon", "W": "webcam", "D": "dslr"}
    return {k: _mat(folder / f"{v}_SURF_L10.mat") for k, v in files.items()}


def amazon400(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Amazon reviews as 400 word-frequency features per domain: ``(features, labels)``."""
    folder = data / "features" / "amazon400"
    return {d: _mat(folder / f"{d}_400.mat") for d in ("books", "dvd", "elec", "kitchen")}
