"""The machinery of the bad-input suite: a case builds its data in a temporary folder, runs
``transferkit fit`` through the real CLI in-process, and checks one of two outcomes.

* ``ok``: exit 0, a run directory, and, when the case names files, a warning naming each of them
  (the unreadable file was skipped, the fit still worked);
* ``error``: exit 2, exactly one ``error:`` line on stderr naming the file, column or field, no
  traceback, and no run directory, checkpoint folder or hidden partial folder left.

In both outcomes the user's data is byte-for-byte what it was before ("nothing lost"), and the
feature cache holds no temporary file.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import support
from support import invoke


@dataclass(frozen=True)
class Built:
    """What a case's builder made: the DATA argument, extra options, and the fragments to be named."""

    data: Path
    args: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One bad input. ``kind`` groups cases in RELIABILITY.md; the id says what the case is."""

    kind: str
    what: str
    expect: str  # "ok" or "error"
    build: Callable[[Path], Built] = field(compare=False)
    task: str = "classification"
    known_defect: str = ""  # a defect this case shows that is not fixed yet: the case fails until it is

    @property
    def id(self) -> str:
        task = "" if self.task == "classification" else f"-{self.task.removesuffix('-explicit')}"
        return f"{self.kind}-{self.what}{task}-{self.expect}"


def params(cases: list[Case]) -> list[object]:
    ids = [case.id for case in cases]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(strict=True, reason=case.known_defect)]
                         if case.known_defect else []) for case in cases]


def skip_and_fail(kind: str, what: str, build: Callable[[Path], Built], task: str = "classification",
                  known_defect: str = "") -> list[Case]:
    """The two policies for one unreadable item: skipped with a named warning, or one named error."""

    def failing(root: Path) -> Built:
        built = build(root)
        return Built(built.data, (*built.args, "--on-error", "fail"), built.names)

    return [Case(kind, f"{what}-skipped", "ok", build, task, known_defect),
            Case(kind, f"{what}-on-error-fail", "error", failing, task, known_defect)]


# -- running and checking ---------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) with a digest of its content or target."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "dir"
    return found


def stray_files(folder: Path) -> list[str]:
    """Temporary or partial files under ``folder``."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name or p.name.endswith("~")]


def run_case(case: Case, tmp_path: Path, backbone: tuple[str, ...]) -> None:
    """Build the case's data, fit on it through the CLI, and check the case's outcome."""
    built = case.build(tmp_path / "data")
    before = tree_digest(tmp_path / "data")
    runs = tmp_path / "runs"
    runs.mkdir()
    out = runs / "run"
    task = () if case.task == "classification" else ("--task", case.task.removesuffix("-explicit"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("fit", built.data, *backbone, *task, *built.args, "--out", out)
    messages = [str(w.message) for w in caught]
    assert "Traceback" not in result.stderr, result.stderr
    assert tree_digest(tmp_path / "data") == before, "the input data changed"
    assert stray_files(Path(os.environ["TRANSFERKIT_CACHE"])) == []
    if case.expect == "ok":
        assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
        assert (out / "transferkit.json").is_file()
        assert sorted(p.name for p in runs.iterdir()) == ["run"], "stray folders next to the run"
        for fragment in built.names:
            assert any(fragment in m for m in messages), (fragment, messages)
    else:
        assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        for fragment in built.names:
            assert fragment in errors[0], (fragment, errors[0])
        assert list(runs.iterdir()) == [], "a run, checkpoint or partial folder was left"


# -- base data: small enough that a linear probe fits in a fraction of a second ---------------------


def image_folder(root: Path, per_class: int = 4, classes: tuple[str, ...] = ("tl", "br")) -> Path:
    """``root/<class>/NN.png``: the two-class blob images of the suite's support module."""
    images, labels = support.blob_images(per_class)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        if label in classes:
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / label / f"{i:02d}.png")
    return root


def audio_folder(root: Path, per_class: int = 4, classes: tuple[str, ...] = ("low", "high")) -> Path:
    """``root/<class>/NN.wav``: 0.3-s low and high tones, 16 kHz."""
    waves, labels = support.tone_waves(per_class)
    for i, (wave, label) in enumerate(zip(waves, labels, strict=True)):
        if label in classes:
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"{i:02d}.wav", wave, 16000)
    return root


def text_rows(per_class: int = 6) -> list[tuple[str, str]]:
    texts, labels = support.sentiment_texts(per_class)
    return list(zip(texts, labels, strict=True))


def write_table(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("text", "label"),
                sep: str = ",") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# -- bad files, built byte by byte -----------------------------------------------------------------


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour: int = 0, rows: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (CRCs correct), with ``rows`` as its only data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG start whose frame header claims ``width`` x ``height``, and no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF header whose logical screen claims ``width`` x ``height``, with one 1x1 frame."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b"\x3b"


def wav_bytes(*, channels: int = 1, rate: int = 16000, bits: int = 16, declared: int | None = None,
              data: bytes = b"\x00\x00" * 800, fmt_code: int = 1) -> bytes:
    """A RIFF/WAVE file with a hand-written header (``declared`` data bytes, default ``len(data)``)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block, block, bits)
    size = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def tone(seconds: float = 0.3, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def put(path: Path, content: bytes | str) -> Path:
    """Write ``content`` at ``path``, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path
