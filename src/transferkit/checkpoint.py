"""Checkpoints of the training loop: everything needed to continue an interrupted run bit for bit.

A checkpoint folder holds::

    latest.json      loop progress (epoch, batch, history, best score, patience count), the Python
                     and NumPy generator states, the run's signature, and the name of ...
    state-N.pt       ... the tensors: model, optimizer, scheduler, best weights so far, the training
                     hooks' state (an adaptation method's discriminator, pseudo-labels), torch
                     generator states (written by ``torch.save``, read with ``weights_only=True``)

Each file is written under a temporary name in the same folder, flushed to disk and renamed;
``latest.json`` is replaced last. A crash or ``SIGKILL`` at any moment therefore leaves the
previous checkpoint whole, and a checkpoint is never half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.errors import ArtifactError, ConfigError

LATEST = "latest.json"
FORMAT_VERSION = 1


@dataclass
class LoopState:
    """Where the loop is; all of it but ``best_state`` is JSON.

    Attributes:
        epoch: epochs finished.
        step: batches done in the current epoch.
        optimizer_steps: optimizer steps since the start of training.
        running_loss: sum of the training losses of this epoch's batches (times their sizes).
        seen: samples in those batches.
        history: one row per finished epoch.
        best_key: ``(val_accuracy, -val_loss)`` of the best epoch so far.
        best_epoch: that epoch (1-based).
        bad_epochs: epochs since the best one.
        stopped_early: early stopping ended training.
        best_state: the best epoch's weights.
    """

    epoch: int = 0
    step: int = 0
    optimizer_steps: int = 0
    running_loss: float = 0.0
    seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_key: tuple[float, float] | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    best_state: dict[str, torch.Tensor] | None = None

    def progress(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "best_state"}

    @classmethod
    def from_progress(cls, progress: dict[str, Any], best_state: dict[str, torch.Tensor] | None) -> LoopState:
        state = cls(**progress, best_state=best_state)
        state.best_key = None if state.best_key is None else (state.best_key[0], state.best_key[1])
        return state


@dataclass
class Checkpoints:
    """Where and how often the training loop checkpoints, and whether it continues from one.

    Attributes:
        folder: the checkpoint folder (created when training starts).
        every: also checkpoint every this many optimizer steps (None: only at the end of epochs).
        resume: continue from the checkpoint in ``folder`` if there is one.
        signature: JSON describing the run (hyperparameters, data sizes, backbone); a checkpoint
            written by a run with another signature is refused rather than silently mixed in.
    """

    folder: Path
    every: int | None = None
    resume: bool = False
    signature: dict[str, Any] = field(default_factory=dict)

    def due(self, optimizer_steps: int) -> bool:
        return bool(self.every) and optimizer_steps % self.every == 0  # type: ignore[operator]

    def describe(self) -> str:
        """Where the last checkpoint is, for messages."""
        progress = read_progress(self.folder)
        if progress is None:
            return f"no checkpoint was written yet in {self.folder}"
        loop = progress["loop"]
        return (f"the last good checkpoint (after {loop['epoch']} epoch(s) and {loop['step']} batch(es)) is in "
                f"{self.folder}")

    def save(self, state: LoopState, tensors: dict[str, Any]) -> None:
        """Write one checkpoint: ``tensors`` (state dicts) to a new ``state-N.pt``, then ``latest.json``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"state-{state.optimizer_steps:09d}-{state.epoch:04d}-{state.step:06d}.pt"
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        _atomic_write(self.folder / name, lambda f: torch.save({**tensors, "best_state": state.best_state,
                                                                 "rng": rng}, f))
        py_version, py_state, py_gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        latest = {"format_version": FORMAT_VERSION, "tensors": name, "signature": self.signature,
                  "loop": state.progress(),
                  "rng": {"python": [py_version, list(py_state), py_gauss],
                          "numpy": [np_name, np.asarray(np_keys).tolist(), np_pos, np_has_gauss, np_gauss]}}
        text = json.dumps(latest)
        _atomic_write(self.folder / LATEST, lambda f: f.write(text.encode()))
        for old in [*self.folder.glob("state-*.pt"), *self.folder.glob(".state-*.tmp*")]:
            if old.name != name:
                old.unlink(missing_ok=True)

    def load(self) -> tuple[LoopState, dict[str, Any]] | None:
        """The last checkpoint as ``(loop state, tensors)``, with the Python and NumPy
        generators restored; None when the folder holds none. The torch generators are restored by
        the caller once everything else is loaded (see ``restore_torch_rng``).

        Raises:
            ConfigError: the checkpoint belongs to a run with another signature.
            ArtifactError: the checkpoint is unreadable.
        """
        latest = read_progress(self.folder)
        if latest is None:
            return None
        expected = json.loads(json.dumps(self.signature))
        if latest.get("signature") != expected:
            differ = _differences(latest.get("signature") or {}, expected)
            raise ConfigError(f"the checkpoint in {self.folder} belongs to another run (it differs in "
                              f"{', '.join(differ)}); resume with the same options, or remove the folder "
                              "to start over")
        path = self.folder / latest["tensors"]
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise ArtifactError(f"cannot read checkpoint {path}: {exc}") from exc
        py, np_state = latest["rng"]["python"], latest["rng"]["numpy"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        state = LoopState.from_progress(latest["loop"], tensors.pop("best_state"))
        return state, tensors


def read_progress(folder: Path) -> dict[str, Any] | None:
    """The ``latest.json`` of a checkpoint folder, or None when there is no checkpoint yet.

    Raises:
        ArtifactError: the file is unreadable or from another format version.
    """
    path = Path(folder) / LATEST
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"checkpoint {path} is unreadable: {exc}") from exc
    if latest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"checkpoint {path} has format version {latest.get('format_version')}; "
                            f"this transferkit reads version {FORMAT_VERSION}")
    return latest


def restore_torch_rng(tensors: dict[str, Any]) -> None:
    """Put torch's CPU (and CUDA) generators back where they were when the checkpoint was written."""
    torch.set_rng_state(tensors["rng"]["torch"])
    if "cuda" in tensors["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["rng"]["cuda"])


def _differences(found: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the entries that differ, nested ones as ``config.lr``."""
    names = []
    for key in sorted(set(found) | set(expected)):
        old, new = found.get(key), expected.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(f"{prefix}{key}")
    return names


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def checkpoint_folder(out: str | Path) -> Path:
    """The folder where a run that writes ``out`` keeps its checkpoints: ``OUT.checkpoints/`` next to it.

    ``transferkit fit`` and ``transferkit adapt`` both use it, so an interrupted run of either is found
    (and resumed with ``--resume``) in the same place.
    """
    out = Path(out)
    return out.with_name(f"{out.name}.checkpoints")


def remove_checkpoints(folder: str | Path) -> None:
    """Delete the checkpoint files in ``folder`` and in its stage sub-folders (a run of several training
    stages, such as a deep adaptation method, checkpoints each in its own), only those, then every folder
    that this left empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for stage in [path for path in folder.iterdir() if path.is_dir()]:
        _remove_checkpoint_files(stage)
    _remove_checkpoint_files(folder)


def _remove_checkpoint_files(folder: Path) -> None:
    for path in [folder / LATEST, *folder.glob("state-*.pt"), *folder.glob(".state-*.tmp*"),
                 *folder.glob(f".{LATEST}.tmp*")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()
