"""The GE2E speaker encoder read from Resemblyzer's wheel (integration: real weights, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
from sklearn.metrics import roc_auc_score

from support import shared_data
from transferkit.backbones import BACKBONES, create_backbone
from transferkit.backbones.base import weights_installed
from transferkit.backbones.ge2e import GE2E_INSTALL, PARTIAL_FRAMES, SAMPLE_RATE, partial_starts
from transferkit.errors import DataError

needs_weights = pytest.mark.skipif(not weights_installed(BACKBONES.get("ge2e_speaker")), reason=GE2E_INSTALL)
pytestmark = pytest.mark.integration

# formants (Hz) of five vowels; a synthetic "speaker" is a pitch and a vocal-tract scaling of them
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480),
          "o": (570, 840, 2410)}
SPEAKERS = [(110, 1.0), (210, 1.15), (150, 0.9), (250, 1.25)]


def synthetic_voice(f0: float, tract: float, vowels: list[str], seed: int) -> np.ndarray:
    """A pulse train at pitch ``f0`` through three formant resonators per vowel, 0.25 s a vowel."""
    rng = np.random.default_rng(seed)
    pieces = []
    for vowel in vowels:
        n = SAMPLE_RATE // 4
        t = np.arange(n) / SAMPLE_RATE
        phase = np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * (3 + rng.random()) * t))) / SAMPLE_RATE
        y = np.diff((phase % 1.0 < 0.5).astype(float), prepend=0) + 0.02 * rng.standard_normal(n)
        for formant, bandwidth in zip(np.array(VOWELS[vowel]) * tract, (80, 100, 120), strict=True):
            b, a = scipy.signal.iirpeak(formant, formant / bandwidth, fs=SAMPLE_RATE)
            y = scipy.signal.lfilter(b, a, y)
        pieces.append(y * np.hanning(n))
    wave = np.concatenate(pieces)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def speaker_separation(backbone, clips: list[np.ndarray], speakers: list[str]) -> float:
    """ROC AUC of cosine similarity for telling same-speaker pairs from different-speaker pairs."""
    backbone.eval()
    with torch.inference_mode():
        emb = backbone.forward_features(**backbone.collate([backbone.transform(c) for c in clips])).numpy()
    sim = emb @ emb.T
    labels = np.array(speakers)
    same = labels[:, None] == labels[None]
    off = ~np.eye(len(labels), dtype=bool)
    return float(roc_auc_score(same[off], sim[off]))


def test_partials_follow_resemblyzer() -> None:
    # 1.3 partials a second: a start every 77 frames; short clips get one (zero-padded) window
    assert partial_starts(SAMPLE_RATE // 2) == [0]
    assert partial_starts(3 * SAMPLE_RATE) == [0, 77, 154]
    # the second window of a 1.8 s clip covers less than 75 % of itself: dropped; at 2.1 s it is kept
    assert partial_starts(int(1.8 * SAMPLE_RATE)) == [0]
    assert partial_starts(int(2.1 * SAMPLE_RATE)) == [0, 77]


def test_random_init_contract_and_batching() -> None:
    torch.manual_seed(0)
    backbone = create_backbone("ge2e_speaker", pretrained=False).eval()
    assert [name for name, _ in backbone.layer_groups()] == ["lstm0", "lstm1", "lstm2", "projection"]
    assert sum(p.numel() for p in backbone.parameters()) == 1_423_616
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 3 * SAMPLE_RATE)]
    samples = [backbone.transform(c) for c in clips]
    assert [tuple(s.shape) for s in samples] == [(1, PARTIAL_FRAMES, 40), (3, PARTIAL_FRAMES, 40)]
    with torch.inference_mode():
        together = backbone.forward_features(**backbone.collate(samples))
        alone = torch.cat([backbone.forward_features(**backbone.collate([s])) for s in samples])
    assert together.shape == (2, 256)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_clip_shorter_than_the_window_is_refused() -> None:
    backbone = create_backbone("ge2e_speaker", pretrained=False)
    with pytest.raises(DataError, match=r"shorter than ge2e_speaker's 25 ms analysis window"):
        backbone.transform(np.zeros(200, dtype=np.float32))


@needs_weights
def test_weights_separate_synthetic_voices_better_than_random() -> None:
    clips, speakers = [], []
    for index, (f0, tract) in enumerate(SPEAKERS):
        for take in range(4):
            vowels = list(np.random.default_rng(100 * index + take).choice(list(VOWELS), 4))
            clips.append(synthetic_voice(f0, tract, vowels, take))
            speakers.append(str(index))
    torch.manual_seed(0)
    real = speaker_separation(create_backbone("ge2e_speaker"), clips, speakers)
    blank = speaker_separation(create_backbone("ge2e_speaker", pretrained=False), clips, speakers)
    assert real > 0.68 and real > blank + 0.15, (real, blank)


@needs_weights
def test_same_speaker_clips_embed_closer_on_fsdd() -> None:
    from transferkit.data.decode import load_audio

    folder = shared_data("speech", "fsdd", "recordings")
    clips, speakers = [], []
    for speaker in ("jackson", "nicolas", "theo", "yweweler"):
        for digit in range(5):
            clips.append(load_audio(folder / f"{digit}_{speaker}_0.wav", SAMPLE_RATE))
            speakers.append(speaker)
    assert speaker_separation(create_backbone("ge2e_speaker"), clips, speakers) > 0.8
