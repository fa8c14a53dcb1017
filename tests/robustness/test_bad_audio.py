"""Bad audio inputs, built by code, each fitted through the CLI (see robust_support for the checks)."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from robust_support import (
    Built,
    Case,
    audio_folder,
    image_folder,
    params,
    put,
    run_case,
    skip_and_fail,
    tone,
    wav_bytes,
    write_table,
)


def encoded(wave: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


def pcm16(seconds: float = 0.3, rate: int = 16000) -> bytes:
    return (tone(seconds, rate) * 30000).astype("<i2").tobytes()


def float_wav(values: np.ndarray) -> bytes:
    return wav_bytes(bits=32, fmt_code=3, data=values.astype("<f4").tobytes())


def extra(name: str, content: Callable[[], bytes], *, named: bool) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        audio_folder(root)
        path = put(root / "low" / name, content())
        return Built(root, names=(str(path),) if named else ())

    return build


UNREADABLE: list[tuple[str, str, str, Callable[[], bytes]]] = [
    ("zero-byte", "wav", "empty.wav", lambda: b""),
    ("zero-byte", "flac", "empty.flac", lambda: b""),
    ("zero-byte", "mp3", "empty.mp3", lambda: b""),
    ("zero-byte", "ogg", "empty.ogg", lambda: b""),
    ("truncated", "wav-half", "half.wav", lambda: encoded(tone())[: len(encoded(tone())) // 2]),
    ("truncated", "wav-header-only", "header.wav", lambda: encoded(tone())[:44]),
    ("truncated", "wav-riff-only", "riff.wav", lambda: b"RIFF\x24\x00\x00\x00WAVE"),
    ("truncated", "flac-half", "half.flac", lambda: encoded(tone(), fmt="FLAC")[:200]),
    ("truncated", "ogg-half", "half.ogg", lambda: encoded(tone(1.0), fmt="OGG", subtype="VORBIS")[:300]),
    ("corrupt", "random-bytes-wav", "noise.wav", lambda: np.random.default_rng(4).bytes(4000)),
    ("corrupt", "text-named-mp3", "song.mp3", lambda: b"ID3 this is not audio at all" * 10),
    ("corrupt", "nul-bytes-flac", "nul.flac", lambda: b"\x00" * 2048),
    ("corrupt", "wav-zero-channels", "zero-channels.wav", lambda: wav_bytes(channels=0, data=pcm16())),
    ("corrupt", "wav-zero-sample-rate", "zero-rate.wav", lambda: wav_bytes(rate=0, data=pcm16())),
    ("corrupt", "wav-unknown-format-code", "format.wav", lambda: wav_bytes(fmt_code=0x1234, data=pcm16())),
    ("corrupt", "wav-no-samples", "silent-header.wav", lambda: wav_bytes(data=b"", declared=0)),
    ("huge", "wav-claims-4-gb", "claims.wav", lambda: wav_bytes(data=pcm16(), declared=0xFFFFFFF0)),
    ("huge", "wav-claims-2-gb-of-6-channels", "claims6.wav",
     lambda: wav_bytes(channels=6, data=pcm16(), declared=0x7FFFFFF0)),
    ("mislabelled", "png-named-wav", "picture.wav", png),
    ("mislabelled", "csv-named-flac", "table.flac", lambda: b"path,label\na.wav,x\n"),
    ("high-bit-depth", "float-wav-with-nan", "nan.wav", lambda: float_wav(np.where(np.arange(4800) % 7, 0.1, np.nan))),
    ("high-bit-depth", "float-wav-with-inf", "inf.wav", lambda: float_wav(np.where(np.arange(4800) % 7, 0.1, np.inf))),
]

READABLE: list[tuple[str, str, str, Callable[[], bytes]]] = [
    ("high-bit-depth", "8-bit-unsigned-wav", "u8.wav", lambda: encoded(tone(), subtype="PCM_U8")),
    ("high-bit-depth", "24-bit-wav", "s24.wav", lambda: encoded(tone(), subtype="PCM_24")),
    ("high-bit-depth", "32-bit-int-wav", "s32.wav", lambda: encoded(tone(), subtype="PCM_32")),
    ("high-bit-depth", "32-bit-float-wav", "f32.wav", lambda: encoded(tone(), subtype="FLOAT")),
    ("high-bit-depth", "64-bit-float-wav", "f64.wav", lambda: encoded(tone().astype(np.float64), subtype="DOUBLE")),
    ("high-bit-depth", "float-wav-out-of-range", "loud.wav", lambda: float_wav(tone() * 40)),
    ("channels", "stereo", "stereo.wav", lambda: encoded(np.stack([tone(), tone()], 1))),
    ("channels", "six-channels", "six.wav", lambda: encoded(np.stack([tone()] * 6, 1))),
    ("rate", "8-khz", "r8k.wav", lambda: encoded(tone(rate=8000), 8000)),
    ("rate", "44-1-khz", "r44.wav", lambda: encoded(tone(rate=44100), 44100)),
    ("rate", "192-khz", "r192.wav", lambda: encoded(tone(rate=192000), 192000)),
    ("rate", "11025-hz-odd-ratio", "r11.wav", lambda: encoded(tone(rate=11025), 11025)),
    ("length", "one-sample", "one.wav", lambda: encoded(np.array([0.1], dtype=np.float32))),
    ("length", "ten-milliseconds", "short.wav", lambda: encoded(tone(0.01))),
    ("length", "silence", "silence.wav", lambda: encoded(np.zeros(4800, dtype=np.float32))),
    ("huge", "35-seconds-at-8-khz", "long.wav", lambda: encoded(tone(35.0, 8000), 8000)),
    ("format", "flac", "ok.flac", lambda: encoded(tone(), fmt="FLAC")),
    ("format", "ogg-vorbis", "ok.ogg", lambda: encoded(tone(), fmt="OGG", subtype="VORBIS")),
    ("mislabelled", "flac-named-wav", "flac.wav", lambda: encoded(tone(), fmt="FLAC")),
    ("mislabelled", "aiff-named-wav", "aiff.wav", lambda: encoded(tone(), fmt="AIFF")),
    ("format", "wav-with-list-chunk-and-odd-size", "chunks.wav",
     lambda: encoded(tone())[:36] + b"LIST" + struct.pack("<I", 5) + b"INFOx\x00" + encoded(tone())[36:]),
    ("format", "wav-with-trailing-garbage", "trailing.wav", lambda: encoded(tone()) + b"junk" * 50),
]


def one_class(root: Path) -> Built:
    audio_folder(root, classes=("low",))
    return Built(root, names=(str(root), "low"))


def empty_folder(root: Path) -> Built:
    root.mkdir(parents=True)
    return Built(root, names=(str(root),))


def class_folder_all_bad(root: Path) -> Built:
    audio_folder(root)
    for i in range(2):
        put(root / "mid" / f"{i}.wav", b"")
    return Built(root, names=(str(root / "mid"),))


def every_file_bad(root: Path) -> Built:
    for label in ("a", "b"):
        put(root / label / "x.wav", b"RIFF")
    return Built(root, names=(str(root),))


def flat(root: Path) -> Built:
    for i in range(3):
        put(root / f"{i}.wav", encoded(tone()))
    return Built(root, names=(str(root),))


def mixed(root: Path) -> Built:
    audio_folder(root)
    image_folder(root, classes=("tl",))
    return Built(root, names=(str(root),))


def image_in_audio_class(root: Path) -> Built:
    audio_folder(root)
    put(root / "low" / "cover.png", png())
    return Built(root, names=(str(root), "cover.png"))


def symlink_loop(root: Path) -> Built:
    audio_folder(root)
    os.symlink("..", root / "low" / "loop")
    return Built(root)


def dangling(root: Path) -> Built:
    audio_folder(root)
    os.symlink(root / "missing.wav", root / "high" / "dead.wav")
    return Built(root, names=(str(root / "high" / "dead.wav"),))


def hidden_junk(root: Path) -> Built:
    audio_folder(root)
    put(root / "low" / "._00.wav", b"\x00\x05\x16\x07")
    put(root / "__MACOSX" / "low" / "._01.wav", b"\x00")
    put(root / "high" / "desktop.ini", "[x]")
    return Built(root)


def modality(asked: str) -> Callable[[Path], Built]:
    def build(root: Path) -> Built:
        audio_folder(root)
        return Built(root, ("--modality", asked), names=(str(root), asked))

    return build


def single_file(root: Path) -> Built:
    audio_folder(root)
    return Built(root / "low" / "00.wav", names=(str(root / "low" / "00.wav"),))


def path_table(root: Path, extra: list[tuple[str, str]] | None = None, header: tuple[str, str] = ("audio", "label"),
               sep: str = ",", name: str = "clips.csv") -> Path:
    audio_folder(root)
    rows = [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.rglob("*.wav"))]
    return write_table(root / name, rows + (extra or []), header=header, sep=sep)


def table_missing(root: Path) -> Built:
    table = path_table(root, [("low/gone.wav", "low")])
    return Built(table, names=(str(root / "low" / "gone.wav"),))


def table_truncated(root: Path) -> Built:
    put(root / "low" / "cut.wav", encoded(tone())[:100])
    table = path_table(root, [("low/cut.wav", "low")])
    return Built(table, names=(str(root / "low" / "cut.wav"),))


def table_empty_path(root: Path) -> Built:
    table = path_table(root, [(" ", "low")])
    return Built(table, names=(f"{table} row 10",))


def table_directory_path(root: Path) -> Built:
    (root / "low" / "dir.wav").mkdir(parents=True)
    table = path_table(root, [("low/dir.wav", "low")])
    return Built(table, names=(str(root / "low" / "dir.wav"),))


def table_mixed(root: Path) -> Built:
    put(root / "c.png", png())
    table = path_table(root, [("c.png", "low")])
    return Built(table, names=(str(table), "c.png"))


def table_tsv(root: Path) -> Built:
    return Built(path_table(root, sep="\t", name="clips.tsv"))


def table_jsonl(root: Path) -> Built:
    audio_folder(root)
    lines = [f'{{"audio": "{p.relative_to(root)}", "label": "{p.parent.name}"}}\n' for p in sorted(root.rglob("*.wav"))]
    return Built(put(root / "clips.jsonl", "".join(lines) + '{"audio": 5, "label": "low"}\n'),
                 names=(str(root / "5"),))


def table_wrong_modality(root: Path) -> Built:
    table = path_table(root)
    return Built(table, ("--modality", "image"), names=(str(table), "image"))


def table_latin1(root: Path) -> Built:
    audio_folder(root)
    rows = "audio,label\n" + "".join(f"{p.relative_to(root)},b\xe9bé\n".replace("b\xe9bé", "grave" if "low" in str(p)
                                     else "aigu\xe9") for p in sorted(root.rglob("*.wav")))
    table = root / "clips.csv"
    table.write_bytes(rows.encode("latin-1"))
    return Built(table, names=(str(table),))


def multilabel_folder(root: Path) -> Built:
    audio_folder(root)
    for f in sorted((root / "low").glob("*.wav"))[:2]:
        os.symlink(f, root / "high" / f"also-{f.name}")
    return Built(root)


def multilabel_truncated(root: Path) -> Built:
    multilabel_folder(root)
    return Built(root, names=(str(put(root / "low" / "cut.wav", encoded(tone())[:60])),))


def regression_table(root: Path, bad: str | None = None) -> Built:
    audio_folder(root)
    rows = [(str(p.relative_to(root)), str(200 + 50 * i)) for i, p in enumerate(sorted(root.rglob("*.wav")))]
    table = write_table(root / "pitch.csv", rows + ([("low/00.wav", bad)] if bad is not None else []),
                        header=("audio", "target"))
    return Built(table, names=(f"{table} row 10",) if bad is not None else ())


def regression(bad: str | None) -> Callable[[Path], Built]:
    return lambda root: regression_table(root, bad)



CASES: list[Case] = []
for kind, what, name, content in UNREADABLE:
    CASES += skip_and_fail(kind, what, extra(name, content, named=True))
for kind, what, name, content in READABLE:
    CASES.append(Case(kind, what, "ok", extra(name, content, named=False)))
CASES += [
    Case("single-class", "one-class-folder", "error", one_class),
    Case("empty", "data-folder", "error", empty_folder),
    Case("corrupt", "class-folder-all-zero-byte", "error", class_folder_all_bad),
    Case("corrupt", "every-file-unreadable", "error", every_file_bad),
    Case("layout", "flat-folder-no-classes", "error", flat),
    Case("mixed-modality", "audio-and-image-class-folders", "error", mixed),
    Case("mixed-modality", "image-in-audio-class", "error", image_in_audio_class),
    Case("symlink", "loop-to-parent", "ok", symlink_loop),
    *skip_and_fail("symlink", "dangling-link", dangling),
    Case("layout", "hidden-files-and-macosx", "ok", hidden_junk),
    Case("option", "modality-image-on-audio-folder", "error", modality("image")),
    Case("option", "modality-text-on-audio-folder", "error", modality("text")),
    Case("path", "single-audio-file", "error", single_file),
    *skip_and_fail("table", "path-to-missing-file", table_missing),
    *skip_and_fail("table", "path-to-truncated-file", table_truncated),
    *skip_and_fail("table", "blank-path-cell", table_empty_path),
    *skip_and_fail("table", "path-to-a-folder", table_directory_path),
    *skip_and_fail("table", "jsonl-number-as-path", table_jsonl),
    Case("mixed-modality", "table-of-audio-and-image-paths", "error", table_mixed),
    Case("table", "tsv-of-paths", "ok", table_tsv),
    Case("table", "modality-image-on-audio-table", "error", table_wrong_modality),
    Case("wrong-encoding", "latin-1-table-of-paths", "error", table_latin1),
    Case("task", "file-in-two-class-folders", "ok", multilabel_folder, "multilabel"),
    *skip_and_fail("task", "truncated-file", multilabel_truncated, "multilabel"),
    Case("task", "numeric-targets", "ok", regression(None), "regression"),
    Case("task", "non-numeric-target", "error", regression("high"), "regression"),
    Case("task", "nan-target", "error", regression("nan"), "regression"),
    *skip_and_fail("task", "empty-target", regression(""), "regression"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_audio_input(case: Case, tmp_path: Path, backbone_args: dict[str, tuple[str, ...]]) -> None:
    run_case(case, tmp_path, backbone_args["audio"])
