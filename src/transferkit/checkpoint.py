"""Checkpoints of the training loop: everything needed to continue an interrupted run bit for bit.

A checkpoint folder holds::

    latest.json      loop progress (epoch, batch, history, best score, patience count), the Python
                     and NumPy generator states, the run's signature, digests of the frozen
                     parameters, and the name of ...
    state-N.pt       ... the tensors: the model's trained parameters and its buffers, optimizer,
                     scheduler, best weights so far, the training hooks' state (an adaptation
                     method's discriminator, pseudo-labels), torch generator states (written by
                     ``torch.save``, read with ``weights_only=True``)

Only the latest checkpoint is kept. Parameters that have been frozen throughout the run (a frozen
backbone, LoRA's base weights, the groups gradual unfreezing has not reached yet) are not written:
the resumed run rebuilds them from the backbone spec, as the interrupted one did, and their digests
prove that it got the same values.

Checkpoints cost a write of the model and the optimizer, so they are taken by time (every
``CHECKPOINT_INTERVAL`` seconds, checked after each optimizer step and at the end of each epoch) and,
optionally, by a step budget; not after every epoch.

Each file is written under a temporary name in the same folder, flushed to disk and renamed;
``latest.json`` is replaced last. A crash or ``SIGKILL`` at any moment therefore leaves the
previous checkpoint whole, and a checkpoint is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.errors import ArtifactError, ConfigError, pickle_refusal
from transferkit.safety import (
    CHECKPOINT_FOLDER,
    artifact_folder,
    artifact_kind,
    atomic_write,
    clear_artifact_folder,
    remove_artifact,
    write_bytes,
)

LATEST = "latest.json"
_CHECKPOINT_FILES = (LATEST, "state-*.pt", ".state-*.tmp*", f".{LATEST}.tmp*")
FORMAT_VERSION = 1
# seconds between two time-based checkpoints
CHECKPOINT_INTERVAL = 300.0


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
        every: also checkpoint once this many optimizer steps have passed since the last checkpoint
            (None: by time only).
        resume: continue from the checkpoint in ``folder`` if there is one.
        signature: JSON describing the run (hyperparameters, data, backbone); a checkpoint
            written by a run with another signature is refused rather than silently mixed in.
        interval: checkpoint once this many seconds have passed since the last checkpoint (or the
            start); None: by steps only.
    """

    folder: Path
    every: int | None = None
    resume: bool = False
    signature: dict[str, Any] = field(default_factory=dict)
    interval: float | None = CHECKPOINT_INTERVAL
    _last_time: float = field(default=0.0, init=False, repr=False)
    _last_steps: int = field(default=0, init=False, repr=False)
    _trained: set[str] = field(default_factory=set, init=False, repr=False)
    _frozen_digests: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._last_time = time.monotonic()  # the interval counts from the start of training

    def due(self, optimizer_steps: int) -> bool:
        """Whether a checkpoint is due after ``optimizer_steps`` steps: by the step budget or by time."""
        if self.every and optimizer_steps - self._last_steps >= self.every:
            return True
        return self.interval is not None and time.monotonic() - self._last_time >= self.interval

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What of ``model`` a checkpoint stores: its state dict without the parameters that have been
        frozen at every checkpoint of this run so far (their digests go into ``latest.json``)."""
        self._trained |= {name for name, p in model.named_parameters() if p.requires_grad}
        state = model.state_dict()
        frozen = {name for name, _ in model.named_parameters()} - self._trained
        for name in frozen - self._frozen_digests.keys():  # a frozen tensor does not change: digest it once
            self._frozen_digests[name] = tensor_digest(state[name])
        self._frozen_digests = {name: self._frozen_digests[name] for name in frozen}
        return {name: tensor for name, tensor in state.items() if name not in frozen}

    def restore_model(self, model: nn.Module, saved: dict[str, torch.Tensor], state: LoopState) -> None:
        """Load what ``model_state`` stored into the rebuilt ``model``, after checking that the rebuilt
        frozen parameters are the ones the interrupted run had; complete ``state.best_state`` with them.

        Raises:
            ConfigError: a frozen parameter of the rebuilt model differs (other pretrained weights).
        """
        current = model.state_dict()
        for name, digest in self._frozen_digests.items():
            if name not in current or tensor_digest(current[name]) != digest:
                raise ConfigError(f"the checkpoint in {self.folder} was written with other values of the frozen "
                                  f"weights ({name}); the backbone rebuilt from its spec has changed, so the run "
                                  "cannot be resumed: remove the folder to start over")
        missing = set(current) - set(saved)
        if missing != set(self._frozen_digests):
            raise ArtifactError(f"the checkpoint in {self.folder} does not fit the model "
                                f"(missing {sorted(missing - set(self._frozen_digests))[:3]})")
        model.load_state_dict(saved, strict=False)
        self._trained = {name for name, _ in model.named_parameters()} - set(self._frozen_digests)
        if state.best_state is not None:
            state.best_state = {**{name: current[name].detach().clone() for name in missing}, **state.best_state}

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
        artifact_folder(self.folder, CHECKPOINT_FOLDER)
        name = f"state-{state.optimizer_steps:09d}-{state.epoch:04d}-{state.step:06d}.pt"
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        best = state.best_state
        if best is not None and "model" in tensors:  # the frozen weights are the model's own: not again
            best = {key: value for key, value in best.items() if key in tensors["model"]}
        atomic_write(self.folder / name, lambda tmp: torch.save({**tensors, "best_state": best, "rng": rng}, tmp))
        py_version, py_state, py_gauss = random.getstate()
        np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
        latest = {"format_version": FORMAT_VERSION, "tensors": name, "signature": self.signature,
                  "loop": state.progress(), "frozen": self._frozen_digests,
                  "rng": {"python": [py_version, list(py_state), py_gauss],
                          "numpy": [np_name, np.asarray(np_keys).tolist(), np_pos, np_has_gauss, np_gauss]}}
        text = json.dumps(latest)
        try:
            write_bytes(self.folder / LATEST, text.encode())
        except BaseException:
            remove_artifact(self.folder / name)  # the previous latest.json names the previous tensors
            raise
        # earlier tensors, and temporary files of a process killed while writing
        for old in [path for pattern in _CHECKPOINT_FILES[1:] for path in self.folder.glob(pattern)]:
            if old.name != name:
                remove_artifact(old)
        self._last_time, self._last_steps = time.monotonic(), state.optimizer_steps

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
        except Exception as exc:  # OSError, EOFError, RuntimeError, or the unpickler's refusal (UnpicklingError)
            if type(exc).__name__ == "UnpicklingError":
                raise ArtifactError(f"cannot read checkpoint {path}: {pickle_refusal(exc)}") from None
            raise ArtifactError(f"cannot read checkpoint {path}: {exc}") from exc
        py, np_state = latest["rng"]["python"], latest["rng"]["numpy"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        state = LoopState.from_progress(latest["loop"], tensors.pop("best_state"))
        self._frozen_digests = dict(latest.get("frozen", {}))
        self._last_time, self._last_steps = time.monotonic(), state.optimizer_steps
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
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(latest, dict):
        raise ArtifactError(f"checkpoint {path} is unreadable: not a transferkit checkpoint record")
    if latest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"checkpoint {path} has format version {latest.get('format_version')}; "
                            f"this transferkit reads version {FORMAT_VERSION}")
    tensors = latest.get("tensors")
    if not isinstance(tensors, str) or Path(tensors).name != tensors or not tensors.startswith("state-"):
        raise ArtifactError(f"checkpoint {path} names the tensors file {tensors!r}, not a state-*.pt file in "
                            f"{path.parent}")
    return latest


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}:{tuple(tensor.shape)};".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


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


def checkpoint_folder(out: str | Path) -> Path:
    """The folder where a run that writes ``out`` keeps its checkpoints: ``OUT.checkpoints/`` next to it.

    ``transferkit fit`` and ``transferkit adapt`` both use it, so an interrupted run of either is found
    (and resumed with ``--resume``) in the same place.
    """
    out = Path(out)
    return out.with_name(f"{out.name}.checkpoints")


def remove_checkpoints(folder: str | Path) -> None:
    """Delete a checkpoint folder that transferkit made (with the stage sub-folders of a run of several
    training stages, such as a deep adaptation method). In a folder that holds other things, only the
    checkpoint files are deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for stage in list(folder.iterdir()):
        if stage.is_dir() and artifact_kind(stage) == CHECKPOINT_FOLDER:
            clear_artifact_folder(stage, _CHECKPOINT_FILES)
    if artifact_kind(folder) == CHECKPOINT_FOLDER:
        clear_artifact_folder(folder, _CHECKPOINT_FILES)
