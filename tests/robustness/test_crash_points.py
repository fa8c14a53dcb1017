"""Crash points: a tiny LP-FT fit is killed with SIGKILL at one point of its life, then the same
command with ``--resume`` must end exactly as the uninterrupted fit did (history, metrics and
weights bit-identical) and leave no stray file: no partial run folder, no checkpoint folder, no
temporary file next to the run or in the feature cache.

Each kill runs in a forked child (torch already imported, one thread) that wraps one function so
that its N-th call sends SIGKILL to the child itself, before or after the call's work: no cleanup
code runs, as when the machine loses power or the OOM killer strikes.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import support
from support import invoke


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL at the ``n``-th call of ``owner.attr`` (``owner``: a module, or ``module:Class``), ``when``
    before or after the call does its work; ``only`` counts just the calls whose arguments it accepts."""

    name: str
    owner: str
    attr: str
    n: int = 1
    when: str = "before"
    only: Callable[..., bool] | None = None
    known_defect: str = ""  # the point fails until this is fixed


def _writes_latest(path: Any, *_: Any, **__: Any) -> bool:
    return Path(path).name == "latest.json"


# 24 sentences, 10% held out: 6 batches of 4 an epoch, 2 epochs; a checkpoint every 2 optimizer steps
# (after steps 2 and 4, at the end of epoch 1, after steps 8 and 10, at the end of epoch 2)
KILL_POINTS = [
    KillPoint("reading-the-data", "transferkit.data.tables", "_load_frame"),
    KillPoint("building-the-backbone", "transferkit.estimator", "build_model"),
    KillPoint("extracting-probe-features", "transferkit.features", "extract_features"),  # via Task.probe_data
    KillPoint("writing-the-feature-cache", "transferkit.features", "save_file", when="after"),
    KillPoint("fitting-the-probe", "transferkit.tasks.classification:Classification", "fit_probe"),
    KillPoint("before-the-first-optimizer-step", "transferkit.train", "_optimize"),
    KillPoint("after-optimizer-step-3-mid-epoch", "transferkit.train", "_optimize", n=3, when="after"),
    KillPoint("writing-checkpoint-2-tensors", "torch", "save", n=2, when="after"),
    KillPoint("between-checkpoint-2-tensors-and-latest-json", "transferkit.checkpoint", "write_bytes", n=2,
              only=_writes_latest),
    KillPoint("right-after-checkpoint-3-end-of-epoch-1", "transferkit.checkpoint:Checkpoints", "save", n=3,
              when="after"),
    KillPoint("validating-epoch-2", "transferkit.train", "_end_epoch", n=2),
    KillPoint("after-the-last-optimizer-step", "transferkit.train", "_optimize", n=12, when="after"),
    KillPoint("final-save-head-written", "transferkit.artifact", "save_model", when="after"),
    KillPoint("final-save-manifest-written", "transferkit.artifact", "write_json", when="after"),
    KillPoint("run-written-checkpoints-not-yet-removed", "transferkit.checkpoint", "remove_checkpoints"),
]


def _owner(spec: str) -> Any:
    module, _, cls = spec.partition(":")
    found = importlib.import_module(module)
    return getattr(found, cls) if cls else found


def _die_at(point: KillPoint, args: list[str]) -> None:
    """The child: wrap the point's function, run the CLI, and exit 0 if the point was never reached."""
    torch.set_num_threads(1)
    owner = _owner(point.owner)
    original = getattr(owner, point.attr)
    calls = [0]

    def wrapper(*a: Any, **k: Any) -> Any:
        counted = point.only is None or point.only(*(a[1:] if point.owner.count(":") else a), **k)
        calls[0] += counted
        due = counted and calls[0] == point.n
        if due and point.when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*a, **k)
        if due and point.when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, point.attr, wrapper)
    invoke(*args)
    os._exit(0)


def fit_args(data: Path, backbone_dir: Path) -> list[str]:
    return ["fit", str(data), "--backbone", f"hf:{backbone_dir}", "--strategy", "lp_ft", "--epochs", "2",
            "--batch-size", "4", "--lr", "1e-3", "--checkpoint-every", "2", "--seed", "3", "--param", "c=1.0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Every fit of this module on one thread, as the forked children run: a resumed run is bit-identical
    to the uninterrupted one only when both sum in the same order (CI runs with two threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    """``(data.csv, run)`` of the uninterrupted fit."""
    folder = tmp_path_factory.mktemp("crash_reference")
    data = support.write_csv(folder / "data.csv", *support.sentiment_texts(12, seed=0))
    result = invoke(*fit_args(data, tiny_bert_dir), "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return data, folder / "run"


def assert_identical(run: Path, reference: Path) -> None:
    for name in ("history.json", "metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text()), name
    for name in ("head.safetensors", "backbone.safetensors"):
        weights, expected = load_file(run / name), load_file(reference / name)
        assert weights.keys() == expected.keys(), name
        for key, value in expected.items():
            assert torch.equal(weights[key], value), f"{name}: {key}"


def leftovers(folder: Path, expected: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


def temporary_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name)


@pytest.mark.parametrize("point", [
    pytest.param(p, id=p.name,
                 marks=[pytest.mark.xfail(strict=True, reason=p.known_defect)] if p.known_defect else [])
    for p in KILL_POINTS])
def test_killed_fit_resumes_to_the_same_run_and_leaves_nothing(point: KillPoint, reference: tuple[Path, Path],
                                                                tiny_bert_dir: Path, tmp_path: Path) -> None:
    data, expected = reference
    local = support.write_csv(tmp_path / "data.csv", *support.sentiment_texts(12, seed=0))
    assert local.read_bytes() == data.read_bytes()
    args = [*fit_args(local, tiny_bert_dir), "--out", str(tmp_path / "run")]
    child = multiprocessing.get_context("fork").Process(target=_die_at, args=(point, args))
    child.start()
    child.join(timeout=300)
    assert child.exitcode == -signal.SIGKILL, f"the kill point was not reached (exit {child.exitcode})"

    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert_identical(tmp_path / "run", expected)
    assert leftovers(tmp_path, {"data.csv", "run"}) == []
    assert temporary_files(tmp_path) == []
    assert temporary_files(Path(os.environ["TRANSFERKIT_CACHE"])) == []
    assert local.read_bytes() == data.read_bytes()
