"""Deep adaptation methods on two shifted toy domains, with a tiny MLP backbone."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

import transferkit.adapt
from transferkit.adapt import base
from transferkit.adapt.deep import DeepAdaptConfig, adapt_model, predict
from transferkit.backbones.base import Backbone, BackboneSpec
from transferkit.data import Samples
from transferkit.errors import ConfigError, DataError
from transferkit.heads import LinearHead, TransferModel

DEEP_METHODS = sorted(m.name for m in transferkit.adapt.DA_METHODS if m.level == "deep")
CLASSES = ["0", "1"]


class PointMLP(Backbone):
    """Reads each item, a 2-sample "waveform", as a point in the plane: ``(B, 2) -> (B, 16)``."""

    modality = "audio"
    sample_rate = 16000

    def __init__(self) -> None:
        super().__init__()
        self.spec = BackboneSpec("test:points", pretrained=False)
        self.num_features = 16
        self.inp = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(16, 16), nn.ReLU())

    def transform(self, item: np.ndarray, train: bool = False) -> torch.Tensor:
        return torch.as_tensor(item, dtype=torch.float32)

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"input_values": torch.stack(samples)}

    def forward_features(self, input_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.out(self.inp(input_values))  # (B, 2) -> (B, 16)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [("inp", self.inp), ("out", self.out)]


def blobs(n: int, *, offset: float, seed: int) -> Samples:
    """Class 0 around (-1, 0), class 1 around (1, 0), everything moved ``offset`` along x."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.stack([np.where(y == 1, 1.0, -1.0) + offset, np.zeros(n)], axis=1) + rng.normal(0, 0.35, (n, 2))
    return Samples([row.astype(np.float32) for row in x], [str(v) for v in y], "audio", [f"X[{i}]" for i in range(n)])


SOURCE = blobs(160, offset=0.0, seed=1)
TARGET = blobs(160, offset=1.2, seed=2)  # the source boundary (x = 0) cuts through target class 0


def unlabelled(samples: Samples) -> Samples:
    return Samples(samples.items, None, samples.modality, samples.origins)


def fresh_model() -> TransferModel:
    torch.manual_seed(0)
    return TransferModel(PointMLP(), LinearHead(16, 2))


def target_accuracy(model: TransferModel) -> float:
    _, probs = predict(model, TARGET, batch_size=256)
    return float((probs.argmax(axis=1) == np.array([int(v) for v in TARGET.labels])).mean())


def run(method: str, **overrides: object) -> tuple[TransferModel, transferkit.adapt.AdaptOutcome]:
    values: dict[str, object] = {"epochs": 8, "batch_size": 32, "lr": 1e-2, "progress": False, "source_epochs": 2}
    values.update(overrides)
    params = values.pop("params", {})
    model = fresh_model()
    outcome = adapt_model(model, SOURCE, unlabelled(TARGET), CLASSES, method, DeepAdaptConfig(**values),  # type: ignore[arg-type]
                          params)  # type: ignore[arg-type]
    return model, outcome


@functools.cache
def source_only_accuracy(epochs: int) -> float:
    return target_accuracy(run("deep_source_only", epochs=epochs)[0])


@pytest.mark.parametrize("method", DEEP_METHODS)
def test_every_deep_method_trains_finitely_and_does_not_lose_target_accuracy(method: str) -> None:
    model, outcome = run(method, epochs=3)
    assert len(outcome.history) == 3
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["target_snd"]) for row in outcome.history)
    assert outcome.info["method"] == method and outcome.info["wall_s"] >= 0
    assert outcome.info["kept_epoch"] in (1, 2, 3)
    accuracy = target_accuracy(model)
    assert accuracy >= 0.55  # a collapse to one class scores 0.5
    assert accuracy >= source_only_accuracy(3) - 1e-9  # with the same budget, no method does worse than none
    assert not any(p.requires_grad for p in model.parameters())


def test_adaptation_beats_source_only_on_shifted_domains() -> None:
    source_only = source_only_accuracy(3)
    assert source_only < 0.7
    for method in ("mcc", "dann", "cdan"):
        assert target_accuracy(run(method, epochs=3)[0]) >= source_only + 0.1, method


def test_the_kept_epoch_is_the_best_label_free_score_and_the_oracle_changes_nothing() -> None:
    model, outcome = run("entropy", epochs=6)
    keys = [(row["selection_score"], -row["train_loss"]) for row in outcome.history]
    assert outcome.info["kept_epoch"] == keys.index(max(keys)) + 1
    assert max(keys)[0] > -math.inf  # some epoch was confident enough to be scored
    for row in outcome.history:  # the density, unless predictions are too unsure to be trusted
        unsure = row["target_entropy"] > 0.5 * math.log(2)
        assert row["selection_score"] == (-math.inf if unsure else row["target_snd"])
    with_oracle, reported = run("entropy", epochs=6, oracle=TARGET)
    assert reported.info["kept_epoch"] == outcome.info["kept_epoch"]
    assert len(reported.info["oracle_accuracy"]) == 6 and 1 <= reported.info["oracle_epoch"] <= 6
    for a, b in zip(model.state_dict().values(), with_oracle.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_target_labels_are_never_read() -> None:
    blind = fresh_model()
    adapt_model(blind, SOURCE, unlabelled(TARGET), CLASSES, "self_training",
                DeepAdaptConfig(epochs=2, batch_size=32, progress=False, source_epochs=1), {})
    labelled = fresh_model()
    adapt_model(labelled, SOURCE, TARGET, CLASSES, "self_training",
                DeepAdaptConfig(epochs=2, batch_size=32, progress=False, source_epochs=1), {})
    for a, b in zip(blind.state_dict().values(), labelled.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_adabn_leaves_target_statistics_in_batchnorm() -> None:
    model, _ = run("adabn", epochs=2)
    norm = model.backbone.inp[1]
    with torch.no_grad():
        hidden = model.backbone.inp[0](torch.stack([torch.as_tensor(x) for x in TARGET.items]))
    assert torch.allclose(norm.running_mean, hidden.mean(0), atol=1e-4)


def test_user_errors_name_the_value(request: pytest.FixtureRequest) -> None:
    config = DeepAdaptConfig(epochs=1, progress=False)
    with pytest.raises(ConfigError, match="no_such_method"):
        adapt_model(fresh_model(), SOURCE, TARGET, CLASSES, "no_such_method", config, {})
    with pytest.raises(ConfigError, match="temprature"):
        adapt_model(fresh_model(), SOURCE, TARGET, CLASSES, "mcc", config, {"temprature": 2.0})
    with pytest.raises(DataError, match="source samples have no labels"):
        adapt_model(fresh_model(), unlabelled(SOURCE), TARGET, CLASSES, "mcc", config, {})
    with pytest.raises(DataError, match="not among the classes"):
        adapt_model(fresh_model(), SOURCE, TARGET, ["0", "2"], "mcc", config, {})
    from transferkit.adapt.deep_methods import SourceOnlyConfig

    base.DA_METHODS.register("arrays_only", level="features", description="arrays only",
                             config=SourceOnlyConfig)(lambda *a, **k: None)
    request.addfinalizer(lambda: base.DA_METHODS.remove("arrays_only"))
    with pytest.raises(ConfigError, match="feature arrays"):
        adapt_model(fresh_model(), SOURCE, TARGET, CLASSES, "arrays_only", config, {})


def test_shot_clustering_corrects_confident_mistakes_inside_a_cluster() -> None:
    from transferkit.adapt.shot import cluster_pseudo_labels

    rng = np.random.default_rng(0)
    truth = np.arange(60) % 3
    features = np.eye(3)[truth] * 5 + rng.normal(0, 0.3, (60, 3))
    probs = np.eye(3)[truth] * 0.8 + 0.1
    wrong = np.arange(0, 60, 6)  # a sixth of the samples predicted as the next class
    probs[wrong] = np.eye(3)[(truth[wrong] + 1) % 3] * 0.8 + 0.1
    assert (probs.argmax(axis=1) == truth).mean() == pytest.approx(5 / 6)
    assert (cluster_pseudo_labels(features.astype(np.float32), probs) == truth).all()


def test_shot_never_trains_the_head_or_reads_the_source_after_pretraining() -> None:
    model = fresh_model()
    config = DeepAdaptConfig(epochs=2, batch_size=32, lr=1e-2, progress=False, source_epochs=0)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    scrambled = Samples(SOURCE.items[::-1], SOURCE.labels, "audio", SOURCE.origins)  # wrong labels
    outcome = adapt_model(model, scrambled, unlabelled(TARGET), CLASSES, "shot", config, {})
    assert outcome.info["source_history"] == []
    for name, value in model.head.state_dict().items():
        assert torch.equal(value, head[name]), name
    assert transferkit.adapt.DA_METHODS.get("shot").source_free
