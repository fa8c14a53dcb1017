"""A deep adaptation run interrupted mid-way and resumed ends exactly as an uninterrupted run does.

The interruption is an exception raised right after the N-th checkpoint was written (the run dies
there, as a kill would leave it), so the tests are deterministic and not timing-dependent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_deep import CLASSES, SOURCE, TARGET, fresh_model, unlabelled

from transferkit.adapt.base import AdaptOutcome
from transferkit.adapt.deep import DeepAdaptConfig, adapt_model
from transferkit.checkpoint import Checkpoints, read_progress, remove_checkpoints
from transferkit.errors import ConfigError
from transferkit.heads import TransferModel

# 100 target samples make 4 batches a pass against 5 source batches an epoch: the target stream is
# mid-pass at most checkpoints, so its position has to come back with them
TARGET_100 = unlabelled(TARGET.subset(list(range(100))))
SETTINGS: dict[str, Any] = {"epochs": 3, "batch_size": 32, "lr": 1e-2, "progress": False, "source_epochs": 2,
                            "checkpoint_every": 2}


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint."""


def interrupt_after(monkeypatch: pytest.MonkeyPatch, checkpoints: int) -> None:
    save, saved = Checkpoints.save, []

    def save_then_stop(self: Checkpoints, *args: Any, **kwargs: Any) -> None:
        save(self, *args, **kwargs)
        saved.append(1)
        if len(saved) == checkpoints:
            raise Interrupted

    monkeypatch.setattr(Checkpoints, "save", save_then_stop)


def run(method: str, params: dict[str, Any] | None = None, **overrides: Any) -> tuple[TransferModel, AdaptOutcome]:
    model = fresh_model()
    config = DeepAdaptConfig(**{**SETTINGS, **overrides})
    return model, adapt_model(model, SOURCE, TARGET_100, CLASSES, method, config, params or {})


def assert_same_run(run_: tuple[TransferModel, AdaptOutcome], reference: tuple[TransferModel, AdaptOutcome]) -> None:
    (model, outcome), (expected_model, expected) = run_, reference
    assert outcome.history == expected.history
    info = {k: v for k, v in outcome.info.items() if k != "wall_s"}
    assert info == {k: v for k, v in expected.info.items() if k != "wall_s"}
    weights, expected_weights = model.state_dict(), expected_model.state_dict()
    for name, value in expected_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(("method", "checkpoints", "position"), [
    # 5 batches an epoch, a checkpoint once 2 steps have passed since the last one: after steps 2, 4, 6, ...
    ("dann", 3, ("adapt", 1, 1)),  # 1 batch into epoch 2: discriminator, reversal schedule, target stream
    # 5 checkpoints of source training first, then 1 batch into the second adaptation epoch: pseudo-labels
    ("self_training", 8, ("adapt", 1, 1)),
    # SHOT trains on the 100 target samples (4 batches): 2 batches into its second epoch
    ("shot", 8, ("adapt", 1, 2)),
])
def test_an_interrupted_run_resumes_to_the_same_run(method: str, checkpoints: int, position: tuple[str, int, int],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reference = run(method)
    assert reference[1].info["kept_epoch"] in (1, 2, 3)
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patched:
        interrupt_after(patched, checkpoints)
        with pytest.raises(Interrupted):
            run(method, checkpoint_dir=str(folder))
    stage, epoch, step = position
    loop = read_progress(folder / stage)["loop"]  # type: ignore[index]
    assert (loop["epoch"], loop["step"]) == (epoch, step)
    if method != "dann":  # the source stage had finished: it is loaded, not trained again
        assert read_progress(folder / "source")["loop"]["epoch"] == SETTINGS["source_epochs"]  # type: ignore[index]

    assert_same_run(run(method, checkpoint_dir=str(folder), resume=True), reference)
    remove_checkpoints(folder)
    assert not folder.exists()


def test_a_resume_with_other_settings_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = str(tmp_path / "checkpoints")
    with monkeypatch.context() as patched:
        interrupt_after(patched, 3)
        with pytest.raises(Interrupted):
            run("dann", checkpoint_dir=folder)
    with pytest.raises(ConfigError, match="differs in config.lr"):
        run("dann", checkpoint_dir=folder, resume=True, lr=3e-2)
    with pytest.raises(ConfigError, match="differs in run.params.trade_off"):
        run("dann", {"trade_off": 0.3}, checkpoint_dir=folder, resume=True)
    with pytest.raises(ConfigError, match="differs in .*run.method"):
        run("cdan", checkpoint_dir=folder, resume=True)
    with pytest.raises(ConfigError, match="interrupted adaptation.*resume"):
        run("dann", checkpoint_dir=folder)
    # the refusals left the checkpoint as it was: the right settings still resume
    run("dann", checkpoint_dir=folder, resume=True)
