"""Fixtures of the bad-input suite: the tiny backbones each modality's cases fit with."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 16-wide Whisper saved like a hub model (random weights), read through ``hf:``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    folder = tmp_path_factory.mktemp("tiny_whisper")
    config = WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                           encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                           vocab_size=100, max_source_positions=1500, max_target_positions=16, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def backbone_args(tiny_bert_dir: Path, tiny_whisper_dir: Path) -> dict[str, tuple[str, ...]]:
    """The ``fit`` options that select each modality's tiny backbone (never the packaged weights), and a
    linear probe of fixed strength: its cross-validated search over C is a second of scikit-learn per
    fit and is tested in tests/strategies; the suite must run in well under a minute."""
    probe = ("--strategy", "linear_probe", "--param", "c=1.0")
    return {
        "image": ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32", *probe),
        "text": ("--backbone", f"hf:{tiny_bert_dir}", *probe),
        "audio": ("--backbone", f"hf:{tiny_whisper_dir}", *probe),
    }

