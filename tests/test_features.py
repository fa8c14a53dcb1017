"""Training batches: an order and augmentations that depend only on (seed, epoch), for exact resumes;
the feature cache survives corrupt entries and unwritable folders."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import support
from transferkit.backbones import BackboneSpec, create_backbone
from transferkit.data import samples_from_arrays
from transferkit.features import BackboneDataset, EpochSampler, FeatureCacheWarning, extract_features


def test_the_order_is_a_permutation_that_depends_only_on_seed_and_epoch() -> None:
    first, again, other_seed = EpochSampler(10, seed=3), EpochSampler(10, seed=3), EpochSampler(10, seed=4)
    for sampler in (first, again, other_seed):
        sampler.set_epoch(2)
    assert list(first) == list(again) == list(first)
    assert sorted(index for index, _ in first) == list(range(10))
    assert list(first) != list(other_seed)
    again.set_epoch(3)
    assert [index for index, _ in again] != [index for index, _ in first]


def test_augmentation_follows_the_sample_seed_and_leaves_the_global_generator_alone() -> None:
    images, labels = support.blob_images(2)
    backbone = create_backbone(BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}))
    dataset = BackboneDataset(samples_from_arrays(images, labels), backbone, [0] * len(labels), train=True)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    crop, same, other = dataset[(0, 123)][0], dataset[(0, 123)][0], dataset[(0, 124)][0]
    assert torch.equal(crop, same) and not torch.equal(crop, other)
    assert torch.equal(torch.get_rng_state(), before)  # dropout's stream does not depend on data loading


@pytest.fixture(scope="module")
def cnn_and_samples():
    images, labels = support.blob_images(2, size=16)
    backbone = create_backbone(BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}))
    return backbone, samples_from_arrays(images, labels)


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "features").glob("*.safetensors"))


@pytest.mark.parametrize("damage", [b"", b"garbage, not safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "])
def test_a_corrupt_cache_entry_is_dropped_and_recomputed_with_a_warning_naming_it(
        cnn_and_samples, damage: bytes) -> None:
    backbone, samples = cnn_and_samples
    cache = Path(os.environ["TRANSFERKIT_CACHE"])
    first = extract_features(backbone, samples, progress=False)
    [entry] = _entries(cache)
    entry.write_bytes(damage)
    with pytest.warns(FeatureCacheWarning, match=f"{entry}.*dropped, recomputing"):
        again = extract_features(backbone, samples, progress=False)
    np.testing.assert_array_equal(again, first)
    assert _entries(cache) == [entry] and entry.stat().st_size > 1000  # rewritten


def test_a_cache_entry_of_the_wrong_shape_is_dropped(cnn_and_samples) -> None:
    from safetensors.numpy import save_file

    backbone, samples = cnn_and_samples
    first = extract_features(backbone, samples, progress=False)
    [entry] = _entries(Path(os.environ["TRANSFERKIT_CACHE"]))
    save_file({"features": np.zeros((1, 3), np.float32)}, str(entry))
    with pytest.warns(FeatureCacheWarning, match="shape"):
        np.testing.assert_array_equal(extract_features(backbone, samples, progress=False), first)


def test_an_unwritable_cache_falls_back_to_no_caching_with_a_warning(
        cnn_and_samples, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backbone, samples = cnn_and_samples
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(blocker))
    with pytest.warns(FeatureCacheWarning, match=f"cannot write the feature cache {blocker}.*without caching"):
        features = extract_features(backbone, samples, progress=False)
    assert features.shape == (len(samples), backbone.num_features)
    assert blocker.read_text().startswith("a file")


def test_audio_longer_than_whisper_encodes_is_named_in_a_warning() -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from transferkit.backbones.whisper import WhisperEncoderBackbone
    from transferkit.features import LongAudioWarning

    # 50 encoder positions hold 1 s of 16 kHz audio (Whisper's own hold 30 s)
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                           vocab_size=100, max_source_positions=50, max_target_positions=16)
    backbone = WhisperEncoderBackbone(WhisperEncoder(config), WhisperFeatureExtractor(feature_size=80),
                                      BackboneSpec("tiny_whisper", pretrained=False))
    assert backbone.max_samples == 16000
    waves = [np.zeros(8000, np.float32), np.zeros(40000, np.float32)]
    dataset = BackboneDataset(samples_from_arrays(waves, ["a", "b"]), backbone, [0, 1], train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongAudioWarning)
        dataset[0]
    with pytest.warns(LongAudioWarning, match=r"X\[1\]: 2.5 s of audio; tiny_whisper encodes only the first 1 s"):
        dataset[1]


def test_an_interrupted_extraction_resumes_from_its_last_shard(cnn_and_samples,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import transferkit.features as features

    backbone, _ = cnn_and_samples
    images, labels = support.blob_images(5, size=16, seed=3)
    samples = samples_from_arrays(images, labels)  # 10 samples: shards of 4, 4 and 2
    whole = extract_features(backbone, samples, use_cache=False, progress=False)
    monkeypatch.setattr(features, "SHARD_SIZE", 4)
    calls = []
    real = features._extract

    def interrupted(backbone, shard, batch_size, bar):
        calls.append(len(shard))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped while extracting the second shard
        return real(backbone, shard, batch_size, bar)

    monkeypatch.setattr(features, "_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(backbone, samples, progress=False)
    parts = list((Path(os.environ["TRANSFERKIT_CACHE"]) / "features").glob("*.parts/*.safetensors"))
    assert len(parts) == 1  # the first shard is on disk

    calls.clear()
    monkeypatch.setattr(features, "_extract", lambda *args: (calls.append(len(args[1])), real(*args))[1])
    resumed = extract_features(backbone, samples, progress=False)
    assert calls == [4, 2]  # only the shards that were missing
    np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-6)
    assert len(_entries(Path(os.environ["TRANSFERKIT_CACHE"]))) == 1
    assert not list((Path(os.environ["TRANSFERKIT_CACHE"]) / "features").glob("*.parts"))  # folded into one


def test_batches_grouped_by_length_pad_little_and_cover_every_item_once() -> None:
    from transferkit.features import LENGTH_GROUP, EpochSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=1000).tolist()
    sampler = EpochSampler(len(lengths), seed=3, lengths=lengths, batch_size=8)
    order = [i for i, _ in sampler]
    assert sorted(order) == list(range(1000))
    assert order == [i for i, _ in EpochSampler(len(lengths), seed=3, lengths=lengths, batch_size=8)]
    padded = sum(8 * max(lengths[i] for i in order[b:b + 8]) for b in range(0, 1000, 8))
    plain = [i for i, _ in EpochSampler(len(lengths), seed=3)]
    padded_plain = sum(8 * max(lengths[i] for i in plain[b:b + 8]) for b in range(0, 1000, 8))
    assert padded < 0.7 * padded_plain and LENGTH_GROUP > 1
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != order  # a new order each epoch
