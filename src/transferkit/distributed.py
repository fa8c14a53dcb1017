"""Several processes of one run under ``accelerate launch``: who writes, and which share of the data is whose.

Accelerate's ``PartialState`` reads the launcher's environment (``RANK``, ``WORLD_SIZE``, ...) and joins
the process group; in a plain ``python`` process it is one process of one, and everything here is a no-op.
The training loop shards its batches itself (``accelerator.prepare``); this module is for the work around
it: the feature cache, the run directory, the checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import PartialState


def state() -> PartialState:
    """The process's place in the launch (joins the process group on first use).

    Without a GPU (or other accelerator) the processes join over gloo on the CPU: Accelerate does that only
    when told (``cpu=True``), so a launch on a CPU-only machine (``accelerate launch --multi_gpu
    --num_processes 2``, ``torchrun``) would otherwise run each process as a separate single-process run.
    """
    return PartialState(cpu=not torch.accelerator.is_available())


def num_processes() -> int:
    return state().num_processes


def is_main_process() -> bool:
    """Only this process writes the run directory, the feature cache and the checkpoints."""
    return state().is_main_process


def wait_for_everyone() -> None:
    state().wait_for_everyone()


def gather_objects(value: Any) -> list[Any]:
    """``value`` of every process, in rank order (a list of one on a single process)."""
    if num_processes() == 1:
        return [value]
    gathered: list[Any] = [None] * num_processes()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any) -> Any:
    """The main process's ``value``, on every process."""
    if num_processes() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
