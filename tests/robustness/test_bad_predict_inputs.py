"""Bad inputs to ``predict`` and ``evaluate`` of a fitted run, per modality: handled, or one line
naming the file, and the run directory unchanged (only ``evaluations/`` may grow)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from robust_support import audio_folder, image_folder, put, text_rows, tree_digest, write_table

from support import invoke

DATA: dict[str, Callable[[Path], Path]] = {
    "image": image_folder,
    "audio": audio_folder,
    "text": lambda root: write_table(root / "data.csv", text_rows()),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, backbone_args: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    found = {}
    for modality, make in DATA.items():
        folder = tmp_path_factory.mktemp(f"predict_{modality}")
        result = invoke("fit", make(folder / "data"), *backbone_args[modality], "--out", folder / "run")
        assert result.exit_code == 0, result.output
        found[modality] = folder / "run"
    return found


# (modality, what, command, build(tmp) -> (args after RUN, fragments), expect)
Build = Callable[[Path], tuple[list[str], tuple[str, ...]]]


def one(path: str, content: bytes | str) -> Build:
    def build(tmp: Path) -> tuple[list[str], tuple[str, ...]]:
        file = put(tmp / path, content)
        return [str(file)], (str(file),)

    return build


def with_good(modality: str, path: str, content: bytes | str) -> Build:
    def build(tmp: Path) -> tuple[list[str], tuple[str, ...]]:
        good = DATA[modality](tmp / "good")
        file = put(tmp / path, content)
        return [str(good), str(file)], (str(file),)

    return build


def missing(path: str) -> Build:
    return lambda tmp: ([str(tmp / path)], (str(tmp / path),))


def table(content: bytes | str, name: str = "eval.csv") -> Build:
    def build(tmp: Path) -> tuple[list[str], tuple[str, ...]]:
        file = put(tmp / name, content)
        return [str(file)], (str(file),)

    return build


def unseen_class_folder(modality: str) -> Build:
    def build(tmp: Path) -> tuple[list[str], tuple[str, ...]]:
        root = DATA[modality](tmp / "eval")
        first = sorted(p for p in root.iterdir() if p.is_dir())[0]
        first.rename(root / "never-seen")
        return [str(root)], (str(root), "never-seen")

    return build


CASES: list[tuple[str, str, str, Build, str]] = [
    ("image", "zero-byte-file", "predict", one("x/bad.png", b""), "error"),
    ("image", "zero-byte-file-next-to-good-folder", "predict", with_good("image", "x/bad.png", b""), "ok"),
    ("image", "audio-file", "predict", one("x/clip.wav", b"RIFF"), "error"),
    ("image", "missing-file", "predict", missing("gone.png"), "error"),
    ("image", "text-instead-of-a-file", "predict", lambda tmp: (["a sentence"], ("a sentence",)), "error"),
    ("image", "evaluate-on-an-unseen-class", "evaluate", unseen_class_folder("image"), "error"),
    ("image", "evaluate-on-a-single-file", "evaluate", one("x/one.png", b""), "error"),
    ("audio", "truncated-wav", "predict", one("x/cut.wav", b"RIFF\x24\x00\x00\x00WAVE"), "error"),
    ("audio", "truncated-wav-next-to-good-folder", "predict", with_good("audio", "x/cut.wav", b"RIFF"), "ok"),
    ("audio", "image-file", "predict", one("x/pic.png", b"\x89PNG"), "error"),
    ("audio", "evaluate-on-an-unseen-class", "evaluate", unseen_class_folder("audio"), "error"),
    ("text", "latin-1-table", "predict", table("text\ncaf\xe9\n".encode("latin-1"), "in.csv"), "error"),
    ("text", "missing-table", "predict", missing("in.csv"), "error"),
    ("text", "folder", "predict", lambda tmp: ([str(tmp)], (str(tmp),)), "error"),
    ("text", "empty-string", "predict", lambda tmp: ([""], ("no readable text inputs", "input 1")), "error"),
    ("text", "evaluate-on-an-unseen-label", "evaluate", table("text,label\ngood film,pos\nmeh,neutral\n"), "error"),
    ("text", "evaluate-on-a-zero-byte-table", "evaluate", table(b""), "error"),
    ("text", "evaluate-without-a-label-column", "evaluate", table("text,stars\ngood,5\nbad,1\n"), "error"),
]


def _param(case: tuple[str, str, str, Build, str]) -> object:
    return pytest.param(*case, id=f"{case[0]}-{case[2]}-{case[1]}-{case[4]}")


@pytest.mark.parametrize(("modality", "what", "command", "build", "expect"), [_param(case) for case in CASES])
def test_bad_predict_or_evaluate_input(runs: dict[str, Path], tmp_path: Path, modality: str, what: str,
                                       command: str, build: Build, expect: str) -> None:
    run = runs[modality]
    before = {k: v for k, v in tree_digest(run).items() if not k.startswith("evaluations")}
    args, fragments = build(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke(command, run, *args)
    assert "Traceback" not in result.stderr, result.stderr
    after = {k: v for k, v in tree_digest(run).items() if not k.startswith("evaluations")}
    assert after == before, "the run directory changed"
    if expect == "ok":
        assert result.exit_code == 0, (result.stderr, result.exception)
        assert any(all(f in str(w.message) for f in fragments) for w in caught), [str(w.message) for w in caught]
    else:
        assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        for fragment in fragments:
            assert fragment in errors[0], (fragment, errors[0])
