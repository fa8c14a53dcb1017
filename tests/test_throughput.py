"""The extraction batch size is chosen by measurement: a clear win for a smaller batch, else the size asked for."""

from __future__ import annotations

import time

import torch

from transferkit.throughput import measure


class _Timed:
    """A stand-in backbone whose forward pass takes ``seconds(batch size)``."""

    def __init__(self, seconds) -> None:
        self.seconds = seconds

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack(samples)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds(len(x)))
        return x


def _examples(n: int) -> list[torch.Tensor]:
    return [torch.zeros(2)] * n


def test_a_smaller_batch_that_is_clearly_faster_is_chosen() -> None:
    # per sample: 5 ms up to 4, then 20 ms (large batches spill out of the caches)
    backbone = _Timed(lambda size: 0.005 * size if size <= 4 else 0.02 * size)
    assert measure(backbone, _examples, [1, 2, 4, 8, 16]) == 4


def test_without_a_clear_win_the_size_asked_for_stays() -> None:
    # per sample: 5 ms at every size, 10 % less at batch 2: noise, not a reason to change
    backbone = _Timed(lambda size: 0.0045 * size if size == 2 else 0.005 * size)
    assert measure(backbone, _examples, [1, 2, 4, 8, 16]) == 16
