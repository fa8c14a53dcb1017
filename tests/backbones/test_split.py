"""A backbone cut in two: the top on the bottom's kept states computes what the whole backbone computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from transferkit.backbones import BackboneSpec, create_backbone
from transferkit.backbones.whisper import WhisperEncoderBackbone
from transferkit.data import Samples
from transferkit.errors import ConfigError
from transferkit.features import frozen_outputs


def tiny_whisper() -> WhisperEncoderBackbone:
    torch.manual_seed(0)
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, vocab_size=100,
                           max_source_positions=200, max_target_positions=16, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    return WhisperEncoderBackbone(WhisperEncoder(config), WhisperFeatureExtractor(feature_size=80),
                                  BackboneSpec("tiny_whisper", pretrained=False)).eval()


def text_samples() -> Samples:
    texts = ["good", "bad movie", "a good and fine film", "bad bad bad"]
    return Samples(items=texts, labels=None, modality="text", origins=[f"row {i}" for i in range(len(texts))])


def audio_samples() -> Samples:
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (3200, 8000, 4800)]
    return Samples(items=waves, labels=None, modality="audio", origins=[f"X[{i}]" for i in range(len(waves))])


def whole(backbone, samples: Samples) -> torch.Tensor:
    with torch.no_grad():
        return backbone.forward_features(**backbone.collate([backbone.transform(x) for x in samples.items]))


@pytest.mark.parametrize("kind", ["text", "audio"])
def test_the_top_on_kept_states_gives_the_whole_backbones_features(kind: str, tiny_bert_dir: Path) -> None:
    backbone = (create_backbone(BackboneSpec(f"hf:{tiny_bert_dir}")).eval() if kind == "text" else tiny_whisper())
    samples = text_samples() if kind == "text" else audio_samples()
    groups = backbone.layer_groups()
    expected = whole(backbone, samples)
    for k in range(1, len(groups)):
        split = backbone.split_top(k)
        states = frozen_outputs(split, backbone, samples, batch_size=2)  # batches of 2: padded differently
        assert len(states) == len(samples) and all(s.ndim == 2 for s in states)
        top = split.top
        assert [name for name, _ in top.layer_groups()] == [name for name, _ in groups[len(groups) - k:]]
        shared = {id(p) for p in backbone.parameters()}
        assert all(id(p) in shared for p in top.parameters())  # training the top trains the backbone
        with torch.no_grad():
            got = top.forward_features(**top.collate([top.transform(s) for s in states]))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_backbone_that_cannot_be_cut_says_so() -> None:
    cnn = create_backbone(BackboneSpec("timm:test_efficientnet", pretrained=False, options={"image_size": 32}))
    assert cnn.split_top(1) is None


def test_kept_states_over_the_memory_limit_stop_with_a_clear_error(tiny_bert_dir: Path) -> None:
    backbone = create_backbone(BackboneSpec(f"hf:{tiny_bert_dir}")).eval()
    with pytest.raises(ConfigError, match="leave cache_frozen out"):
        frozen_outputs(backbone.split_top(1), backbone, text_samples(), batch_size=2, max_bytes=100)


def test_the_top_refuses_states_of_the_wrong_width(tiny_bert_dir: Path) -> None:
    from transferkit.errors import DataError

    backbone = create_backbone(BackboneSpec(f"hf:{tiny_bert_dir}")).eval()
    with pytest.raises(DataError, match="cached states must be"):
        backbone.split_top(1).top.transform(np.zeros((3, 5), dtype=np.float32))
