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
    """The ``fit`` options that select each modality's tiny backbone (never the packaged weights)."""
    return {
        "image": ("--backbone", "timm:test_efficientnet", "--from-scratch", "--image-size", "32"),
        "text": ("--backbone", f"hf:{tiny_bert_dir}"),
        "audio": ("--backbone", f"hf:{tiny_whisper_dir}"),
    }


@pytest.fixture(autouse=True)
def _one_probe_strength(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fit the linear probe with C=1 instead of its cross-validated search over C.

    The search is a second of scikit-learn per fit and is tested in tests/strategies; the cases here
    test what happens to bad input, and the suite must run in well under a minute.
    """
    from dataclasses import replace

    from transferkit.estimator import TransferEstimator

    original = TransferEstimator._fit_config

    def with_c(self: TransferEstimator):  # type: ignore[no-untyped-def]
        config = original(self)
        return config if config.probe_c is not None else replace(config, probe_c=1.0)

    monkeypatch.setattr(TransferEstimator, "_fit_config", with_c)
