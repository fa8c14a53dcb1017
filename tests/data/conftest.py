"""Tiny generated data for the data-layer tests: PNGs, sine-wave WAVs, broken files."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def write_png(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def write_wav(
    path: Path, freq: float = 440.0, sample_rate: int = 8000, seconds: float = 0.25, channels: int = 1
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sample_rate)
    return path


def write_corrupt_jpeg(path: Path) -> Path:
    """A .jpg that is not an image at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html>404 not found</html>" * 4)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A real JPEG cut in half, as an interrupted download leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_truncated_wav(path: Path) -> Path:
    """A WAV whose header declares more audio than the file holds."""
    write_wav(path, seconds=0.5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


class Writers:
    """The file writers above, handed to tests as the ``write`` fixture."""

    png = staticmethod(write_png)
    wav = staticmethod(write_wav)
    corrupt_jpeg = staticmethod(write_corrupt_jpeg)
    truncated_jpeg = staticmethod(write_truncated_jpeg)
    truncated_wav = staticmethod(write_truncated_wav)


@pytest.fixture
def write() -> type[Writers]:
    return Writers


@pytest.fixture
def shared_data() -> Path:
    """The real datasets next to the project, or a skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """``images/{cat,dog}/`` with three PNGs each, plus a README and a .DS_Store to ignore."""
    root = tmp_path / "images"
    for i in range(3):
        write_png(root / "cat" / f"c{i}.png", (200, 20 * i, 20))
        write_png(root / "dog" / f"d{i}.png", (20, 20 * i, 200))
    (root / "README.md").write_text("my images")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """``audio/{low,high}/`` with two sine-wave WAVs each."""
    root = tmp_path / "audio"
    for i in range(2):
        write_wav(root / "low" / f"l{i}.wav", freq=220 + i)
        write_wav(root / "high" / f"h{i}.wav", freq=1760 + i)
    return root


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[[str, str], Path]:
    def make(name: str, content: str) -> Path:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        return path

    return make
