"""The learning-rate range test: the curve, the rule, the caller's model left alone, find_lr and the CLI."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import support
from transferkit.errors import ConfigError
from transferkit.lr_finder import (
    LRFinderConfig,
    LRFinderWarning,
    find_lr,
    lr_ramp,
    read_curve,
    suggest_lr,
)


@pytest.fixture(autouse=True, scope="module")
def _keep_warning_format() -> Iterator[None]:
    """The CLI shortens warnings.formatwarning for its own process; undo that after these tests."""
    original = warnings.formatwarning
    yield
    warnings.formatwarning = original


class Linear(nn.Module):
    """Logistic regression with the training loop's calling convention: ``model(x=...) -> (B, C)``."""

    def __init__(self, dim: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def gaussian_classes(n: int = 512, dim: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes 4 apart along one axis of a scale-3 Gaussian cloud, 5% labels flipped: a linear model
    fits them, and too large a step overshoots into confident mistakes on the flipped points."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, dim, generator=g)
    x[:, 0] += (2 * y - 1) * 2.0
    flipped = torch.rand(n, generator=g) < 0.05
    return 3 * x, torch.where(flipped, 1 - y, y)


def loader_of(x: torch.Tensor, y: torch.Tensor, batch_size: int = 32) -> DataLoader:
    def collate(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"x": torch.stack([p[0] for p in pairs])}, torch.stack([p[1] for p in pairs])

    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0))


def loss_after_training(model: nn.Module, lr: float, x: torch.Tensor, y: torch.Tensor, steps: int = 30) -> float:
    """Full-data loss after ``steps`` AdamW steps at a constant ``lr``, from ``model``'s weights."""
    trained = Linear(x.shape[1])
    trained.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(trained.parameters(), lr=lr)
    batches = iter([])
    loader = loader_of(x, y)
    for _ in range(steps):
        try:
            batch, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch, labels = next(batches)
        loss = F.cross_entropy(trained(**batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(F.cross_entropy(trained(x), y))


def s_curve(lrs: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A range-test curve: flat at 0.7, an S-shaped descent centred at 1e-4 to 0.2, divergence from 3e-2."""
    x = np.log10(lrs)
    clean = 0.7 - 0.5 / (1 + np.exp(-(x + 4) / 0.3)) + np.where(x > -1.5, 3 * (x + 1.5) ** 2, 0.0)
    return clean + noise * np.random.default_rng(seed).standard_normal(len(lrs))


# -- the rule, on curves with a known answer ----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_rule_finds_the_descent_of_a_noisy_curve(seed: int) -> None:
    lrs = lr_ramp(1e-7, 1.0, 100)
    reading = read_curve(lrs, s_curve(lrs, noise=0.05, seed=seed))
    # the descent runs from about 1e-5 to 1e-3 and the loss is flat until about 3e-2
    assert 3e-5 < reading.suggestion < 1e-3
    assert 5e-5 < reading.candidates["descent_midpoint"] < 2e-4  # centred on the S, whatever the noise
    assert reading.suggestion < reading.candidates["min_loss"]
    assert not reading.notes


def test_rule_survives_an_exploding_tail() -> None:
    lrs = lr_ramp(1e-7, 1.0, 100)
    losses = s_curve(lrs, noise=0.02, seed=0)
    losses[-3:] = [50.0, 1e4, np.nan]  # what a divergent run records last
    reading = read_curve(lrs, losses)
    assert 3e-5 < reading.suggestion < 1e-3
    assert np.isfinite(reading.smoothed).all()


def test_rule_says_when_the_loss_never_falls() -> None:
    lrs = lr_ramp(1e-7, 1.0, 60)
    reading = read_curve(lrs, np.linspace(0.7, 3.0, 60))
    assert reading.suggestion == pytest.approx(lrs[0])
    assert any("never fell" in note for note in reading.notes)


# -- the test itself, on a linear model -----------------------------------------------------------------------

def test_caller_model_flags_and_random_state_are_unchanged() -> None:
    x, y = gaussian_classes()
    torch.manual_seed(0)
    model = Linear()
    model.fc.bias.requires_grad_(False)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    result = suggest_lr(model, loader_of(x, y))
    assert result.lrs, "the test ran"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not model.fc.bias.requires_grad and model.fc.weight.requires_grad
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_ramp_is_geometric_and_scales_every_group() -> None:
    x, y = gaussian_classes()
    seen: list[list[float]] = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:
            seen.append([group["lr"] for group in self.param_groups])
            return super().step(closure)

    def groups(model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [model.fc.weight], "lr": 1.0}, {"params": [model.fc.bias], "lr": 10.0}]

    config = LRFinderConfig(start_lr=1e-6, end_lr=1e-2, num_steps=50)
    with pytest.warns(LRFinderWarning):  # plain SGD barely moves below 1e-2: a curve with no descent
        result = suggest_lr(Linear(), loader_of(x, y), param_groups=groups, optimizer=RecordingSGD, config=config)
    lrs = np.array(result.lrs)
    assert lrs[0] == pytest.approx(1e-6) and len(lrs) == 50
    assert np.all(np.diff(lrs) > 0)
    assert np.allclose(lrs[1:] / lrs[:-1], (1e-2 / 1e-6) ** (1 / 49))
    assert np.allclose([base for base, _ in seen], lrs)
    assert np.allclose([head / base for base, head in seen], 10.0)


def test_divergence_stops_the_test_early() -> None:
    x, y = gaussian_classes()
    torch.manual_seed(0)
    config = LRFinderConfig(end_lr=100.0, max_grad_norm=None)  # plain SGD, unclipped: large steps blow up
    result = suggest_lr(Linear(), loader_of(x, y), optimizer=torch.optim.SGD, config=config)
    assert result.diverged
    assert len(result.lrs) < config.num_steps
    last = result.losses[-1]
    assert not np.isfinite(last) or last > config.diverge_factor * min(result.smoothed)
    # strictly inside the tested range, below the divergence point
    assert result.lrs[0] < result.suggestion < result.candidates["min_loss"] < result.lrs[-1]


def test_suggestion_trains_better_than_rates_100x_away() -> None:
    x, y = gaussian_classes()
    torch.manual_seed(0)
    model = Linear()
    result = suggest_lr(model, loader_of(x, y))
    assert result.lrs[0] < result.suggestion < result.lrs[-1]
    at_suggestion = loss_after_training(model, result.suggestion, x, y)
    too_high = loss_after_training(model, 100 * result.suggestion, x, y)
    too_low = loss_after_training(model, result.suggestion / 100, x, y)
    with torch.no_grad():
        start = float(F.cross_entropy(model(x), y))
    assert at_suggestion < 0.5 * start
    assert at_suggestion < too_high - 0.1
    assert at_suggestion < too_low - 0.1


def test_plot_writes_a_png(tmp_path: Path) -> None:
    x, y = gaussian_classes()
    result = suggest_lr(Linear(), loader_of(x, y), config=LRFinderConfig(num_steps=60))
    path = result.plot(tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_ramp_is_a_config_error() -> None:
    x, y = gaussian_classes(64)
    with pytest.raises(ConfigError, match="start_lr"):
        suggest_lr(Linear(), loader_of(x, y), config=LRFinderConfig(start_lr=1.0, end_lr=1e-3))


# -- from raw data: find_lr and the CLI -------------------------------------------------------------------

def test_find_lr_on_texts_with_a_tiny_bert(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LRFinderWarning)  # 48 texts make a coarse curve; this checks the plumbing
        result = find_lr(texts, labels, backbone=f"hf:{tiny_bert_dir}", batch_size=8, pretrained=True,
                         config=LRFinderConfig(num_steps=40))
    assert result.lrs[0] < result.suggestion < result.lrs[-1]
    assert result.suggestion < result.candidates["min_loss"]
    assert result.info["strategy"] == "finetune" and result.info["head_lr_scale"] == 10.0
    assert result.info["layer_decay"] == 0.8


def test_find_lr_partial_on_images() -> None:
    images, labels = support.blob_images(8, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LRFinderWarning)
        result = find_lr(images, labels, backbone="timm:test_efficientnet", pretrained=False, strategy="partial",
                         backbone_options={"image_size": 32}, batch_size=8, config=LRFinderConfig(num_steps=20))
    assert result.info["train_last_k"] == 2 and result.info["freeze_bn"] is False
    assert len(result.lrs) <= 20 and np.all(np.diff(result.lrs) > 0)


def test_find_lr_rejects_strategies_it_cannot_reproduce(tiny_bert_dir: Path) -> None:
    texts, labels = support.sentiment_texts(4)
    with pytest.raises(ConfigError, match="linear_probe"):
        find_lr(texts, labels, backbone=f"hf:{tiny_bert_dir}", strategy="linear_probe")


def test_cli_lr_find_prints_the_rate_and_writes_the_plot(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transferkit.cli import app

    data = tmp_path / "data.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*support.sentiment_texts(16), strict=True))
    png = tmp_path / "plots" / "lr.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LRFinderWarning)  # 32 random-weight texts make a weak curve
        result = CliRunner().invoke(app, ["lr-find", str(data), "--backbone", f"hf:{tiny_bert_dir}",
                                          "--batch-size", "8", "--num-steps", "40", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.stdout and "--lr " in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["lr-find", str(data), "--backbone", f"hf:{tiny_bert_dir}", "--strategy", "lp_ft"])
    assert bad.exit_code == 2 and "error:" in bad.stderr
    # --mixed-precision reaches the range test (it was once accepted and ignored)
    half = CliRunner().invoke(app, ["lr-find", str(data), "--backbone", f"hf:{tiny_bert_dir}", "--batch-size", "8",
                                    "--num-steps", "5", "--mixed-precision", "half"])
    assert half.exit_code == 2 and "half" in half.stderr
