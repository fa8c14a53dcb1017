"""Tiny data for tests, built here (importable as ``support`` from any test file)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


WORDS = [
    "good",
    "great",
    "fine",
    "lovely",
    "superb",
    "happy",
    "nice",
    "bad",
    "awful",
    "poor",
    "sad",
    "terrible",
    "boring",
    "ugly",
    "film",
    "movie",
    "the",
    "a",
    "was",
    "is",
    "very",
    "plot",
    "acting",
]


def sentiment_texts(n_per_class: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Tiny two-class text data that a small model can learn: positive vs negative words."""
    rng = np.random.default_rng(seed)
    pos, neg = WORDS[:7], WORDS[7:14]
    filler = WORDS[14:]
    texts, labels = [], []
    for label, words in (("pos", pos), ("neg", neg)):
        for _ in range(n_per_class):
            chosen = list(rng.choice(words, 2)) + list(rng.choice(filler, 3))
            rng.shuffle(chosen)
            texts.append(" ".join(chosen))
            labels.append(label)
    return texts, labels


def multilabel_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Tiny multi-label text data: a polarity (``pos``/``neg``) and, independently, the topics ``plot`` and
    ``acting`` when those words occur; labels like ``neg|plot`` or ``acting|plot|pos``."""
    rng = np.random.default_rng(seed)
    pos, neg, filler = WORDS[:7], WORDS[7:14], WORDS[16:21]
    texts, labels = [], []
    for i in range(n):
        polarity = "pos" if i % 2 else "neg"
        words = list(rng.choice(pos if polarity == "pos" else neg, 2)) + list(rng.choice(filler, 2))
        names = {polarity}
        for topic in ("plot", "acting"):
            if rng.random() < 0.5:
                words.append(topic)
                names.add(topic)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append("|".join(sorted(names)))
    return texts, labels


def rated_texts(n: int, seed: int = 0) -> tuple[list[str], list[float]]:
    """Tiny regression text data: four sentiment words; the rating is 1 + the number of positive ones
    (1 to 5) plus a little noise."""
    rng = np.random.default_rng(seed)
    pos, neg, filler = WORDS[:7], WORDS[7:14], WORDS[16:21]
    texts, ratings = [], []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        words = list(rng.choice(pos, k)) + list(rng.choice(neg, 4 - k)) + list(rng.choice(filler, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        ratings.append(round(1.0 + k + 0.1 * float(rng.standard_normal()), 3))
    return texts, ratings


def blob_images(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Tiny two-class images: a bright square top-left vs bottom-right, with noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in ("tl", "br"):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            half = size // 2
            if label == "tl":
                img[:half, :half] = 230
            else:
                img[half:, half:] = 230
            images.append(img)
            labels.append(label)
    return np.stack(images), labels


def identity_images(identities: range, per_identity: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """An identity-like set: each identity is a fixed coarse random pattern (its "face"); each of its images
    is that pattern shifted by up to a pixel, with its own brightness and noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for identity in identities:
        face = np.random.default_rng(1000 + identity).integers(0, 256, size=(4, 4, 3))
        face = np.kron(face, np.ones((8, 8, 1)))  # (32, 32, 3)
        for _ in range(per_identity):
            shifted = np.roll(face, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
            image = shifted * rng.uniform(0.9, 1.1) + rng.normal(0, 8, size=face.shape)
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(f"id{identity}")
    return np.stack(images), labels


def tone_waves(n_per_class: int, seed: int = 0, sr: int = 16000) -> tuple[list[np.ndarray], list[str]]:
    """Tiny two-class audio: 0.3-s low vs high sine tones with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.3 * sr)) / sr
    waves, labels = [], []
    for label, freq in (("low", 300.0), ("high", 2500.0)):
        for _ in range(n_per_class):
            wave = 0.5 * np.sin(2 * np.pi * freq * rng.uniform(0.9, 1.1) * t) + 0.05 * rng.standard_normal(len(t))
            waves.append(wave.astype(np.float32))
            labels.append(label)
    return waves, labels


def invoke(*args: object):
    """Run the transferkit CLI in-process with string arguments."""
    from typer.testing import CliRunner

    from transferkit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit status 2 and exactly one ``error:`` line on stderr (no traceback) naming the fragments."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def write_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    """A table of texts and labels with the header ``text,label``."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


def tagged_sentences(n: int, seed: int = 0, length: int = 6) -> tuple[list[list[str]], list[list[str]]]:
    """Tiny named-entity data: sentences of ``length`` words from ``WORDS``, where each positive word is
    a ``POS`` entity and each negative one a ``NEG`` entity, and ``very`` before one of them opens it
    (``very good``: ``B-POS I-POS``). Returns the words and the BIO tags of each sentence."""
    rng = np.random.default_rng(seed)
    pos, neg, filler = set(WORDS[:7]), set(WORDS[7:14]), WORDS[14:]
    sentences, tags = [], []
    for _ in range(n):
        words = [str(rng.choice(WORDS)) if rng.random() < 0.5 else str(rng.choice(filler)) for _ in range(length)]
        labels = []
        for i, word in enumerate(words):
            kind = "POS" if word in pos else "NEG" if word in neg else None
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if word == "very" and (nxt in pos or nxt in neg):
                labels.append("B-" + ("POS" if nxt in pos else "NEG"))
            elif kind and i > 0 and words[i - 1] == "very":
                labels.append(f"I-{kind}")
            elif kind:
                labels.append(f"B-{kind}")
            else:
                labels.append("O")
        sentences.append(words)
        tags.append(labels)
    return sentences, tags


def blob_image_folder(folder: Path, n_per_class: int = 10, seed: int = 0) -> Path:
    """``blob_images`` as PNG files in one subfolder per class."""
    from PIL import Image

    images, labels = blob_images(n_per_class, seed=seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / label / f"{i}.png")
    return folder


def write_images(root: Path, images: np.ndarray, labels: list[str]) -> Path:
    """Save images as ``root/LABEL/NN.png`` (a class-folder dataset)."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / f"{i:02d}.png")
    return root


def squares(count: int, *, side: int = 96, seed: int = 0) -> tuple[list[Any], list[list[tuple]]]:
    """Dark noisy images, each with two bright yellow squares boxed as ``square``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for _ in range(count):
        pixels = (30 + rng.integers(0, 20, (side, side, 3))).astype(np.uint8)
        found = []
        for _ in range(2):
            size = int(rng.integers(14, 22))
            x, y = (int(v) for v in rng.integers(0, side - size, 2))
            pixels[y:y + size, x:x + size] = (230, 210, 40)
            found.append((x, y, x + size, y + size, "square"))
        images.append(Image.fromarray(pixels))
        boxes.append(found)
    return images, boxes
