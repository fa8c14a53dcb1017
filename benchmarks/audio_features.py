"""Hand-made audio features of the speech benchmarks: MFCC statistics (the classic baseline) and the
spectrum of a clip's quietest frames (a control that sees the recording setup, not the speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def log_mel_frames(wave: np.ndarray, sample_rate: int, *, n_mels: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``(log_mel (T, n_mels), frame_power (T,))`` of 25 ms Hamming frames every 10 ms."""
    from transformers.audio_utils import mel_filter_bank

    frame, hop = int(0.025 * sample_rate), int(0.010 * sample_rate)
    n_fft = 1 << (frame - 1).bit_length()
    wave = np.pad(wave, (0, max(0, frame - len(wave))))
    starts = np.arange(0, len(wave) - frame + 1, hop)
    frames = np.stack([wave[s:s + frame] for s in starts]) * np.hamming(frame)  # (T, frame)
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2  # (T, n_fft / 2 + 1)
    mel = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
                          max_frequency=sample_rate / 2, sampling_rate=sample_rate)  # (F, n_mels)
    return np.log(power @ mel + 1e-10), power.sum(axis=1)


def mfcc_stats(path: Path, *, sample_rate: int = 16000, n_mfcc: int = 20) -> np.ndarray:
    """Mean and standard deviation over frames of 20 MFCCs (40 mel bands): ``(40,)``."""
    from scipy.fft import dct

    from transferkit.data import load_audio

    log_mel, _ = log_mel_frames(load_audio(path, sample_rate=sample_rate), sample_rate)
    coefficients = dct(log_mel, type=2, norm="ortho", axis=1)[:, :n_mfcc]  # (T, n_mfcc)
    return np.concatenate([coefficients.mean(axis=0), coefficients.std(axis=0)])


def quietest_frames_spectrum(path: Path, *, sample_rate: int = 16000, fraction: float = 0.1) -> np.ndarray:
    """The mean log-mel spectrum ``(40,)`` of the ``fraction`` of frames with the least power (at least 3):
    the background noise between and around the words, with almost no speech in it."""
    from transferkit.data import load_audio

    log_mel, power = log_mel_frames(load_audio(path, sample_rate=sample_rate), sample_rate)
    quiet = np.argsort(power)[: max(3, int(fraction * len(power)))]
    return log_mel[quiet].mean(axis=0)
