"""The GE2E speaker encoder (Wan et al. 2018) as an audio backbone: one 256-d voice print per clip.

The weights are Resemblyzer's ``pretrained.pt`` (PyPI wheel ``resemblyzer==0.1.4``, Apache-2.0): a
3-layer LSTM (256 units) on 40 mel bands and a Linear 256 -> 256 with ReLU, trained with the
generalised end-to-end loss on thousands of speakers. The wheel's own code imports ``webrtcvad``
(which needs a compiler) and ``librosa``, so the state dict is read directly, with
``torch.load(weights_only=True)``, into ``GE2ESpeakerBackbone``; nothing of the package is imported.

The front end is the authors' (Resemblyzer's ``audio.py`` and ``hparams.py``): 16 kHz audio, volume
raised (never lowered) to -30 dBFS, a power mel spectrogram (not log) with librosa's defaults: 25 ms
Hann windows (400 samples), 10 ms hop, centred frames with reflect padding, 40 Slaney-normalised
bands from 0 to 8 kHz. The filterbank is ``transformers.audio_utils.mel_filter_bank``, which
reproduces librosa's. Like ``VoiceEncoder.embed_utterance``, a clip is cut into partial utterances of
160 frames (1.6 s) at 1.3 per second (the last one kept if it covers 75 % of a window; a clip
shorter than one window is zero-padded to it), each partial is embedded, and the clip's embedding
is the L2-normalised mean of its partials. Resemblyzer also trims long silences with webrtcvad's
voice activity detector; that step is left out here (it needs the compiled package).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone, BackboneSpec
from transferkit.errors import BackboneError, DataError

GE2E_INSTALL = "python -m pip install --no-deps resemblyzer==0.1.4"

SAMPLE_RATE = 16_000
N_MELS = 40
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s of mel frames per partial utterance
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
HIDDEN = 256
LAYERS = 3
_INT16_MAX = 2**15 - 1


def packaged_ge2e_weights() -> Path:
    """The ``pretrained.pt`` inside the installed ``resemblyzer`` package, found without importing it.

    Raises:
        BackboneError: the package is not installed (names the install command) or has no weights file.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"ge2e_speaker needs the 'resemblyzer' package ({GE2E_INSTALL})")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise BackboneError(f"the resemblyzer package has no pretrained.pt at {path}; reinstall it ({GE2E_INSTALL})")
    return path


def raise_volume(waveform: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale a quieter clip up to ``target_dbfs`` RMS (as 16-bit PCM); louder clips are left as they are."""
    rms = float(np.sqrt(np.mean((waveform.astype(np.float64) * _INT16_MAX) ** 2)))
    if rms == 0.0:
        return waveform
    change = target_dbfs - 20.0 * np.log10(rms / _INT16_MAX)
    return waveform if change < 0 else (waveform * np.float32(10.0 ** (change / 20.0))).astype(np.float32)


def partial_starts(num_samples: int) -> list[int]:
    """The first mel frame of each partial utterance of a clip, as ``VoiceEncoder.compute_partial_slices``.

    Windows of ``PARTIAL_FRAMES`` start every ``1 / PARTIALS_PER_SECOND`` s; the last is dropped when
    it covers less than ``MIN_COVERAGE`` of the clip, unless it is the only one.
    """
    num_frames = int(np.ceil((num_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIALS_PER_SECOND) / HOP))
    starts = list(range(0, max(1, num_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * HOP
    coverage = (num_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts


class GE2ESpeakerBackbone(Backbone):
    """GE2E speaker encoder: mel partials ``(P, 160, 40)`` -> LSTM -> Linear + ReLU -> mean over each
    clip's partials -> ``(B, 256)``, L2-normalised.

    Batches are ``{"partials": (P, 160, 40), "owner": (P,)}``: every partial utterance of the batch and
    the index of the clip it belongs to.

    The three LSTM layers are kept as three one-layer LSTMs (the same function: a stacked LSTM without
    dropout feeds each layer the previous one's outputs), so that they are separate layer groups.

    Example:
        >>> backbone = create_backbone("ge2e_speaker")  # doctest: +SKIP
        >>> backbone.forward_features(**backbone.collate([backbone.transform(waveform)])).shape  # doctest: +SKIP
        torch.Size([1, 256])
    """

    modality = "audio"
    num_features = HIDDEN
    sample_rate = SAMPLE_RATE

    def __init__(self, spec: BackboneSpec, weights_path: Path | None) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.spec = spec
        self.lstms = nn.ModuleList([nn.LSTM(N_MELS if i == 0 else HIDDEN, HIDDEN, batch_first=True)
                                    for i in range(LAYERS)])
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        filters = mel_filter_bank(num_frequency_bins=WINDOW // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
                                  max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                                  mel_scale="slaney")  # (201, 40)
        self.register_buffer("mel_filters", torch.from_numpy(np.asarray(filters, dtype=np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(WINDOW, periodic=True), persistent=False)
        if weights_path is not None:
            self.load_state_dict(_read_weights(weights_path), strict=True)

    def transform(self, item: np.ndarray, train: bool = False) -> torch.Tensor:
        """One mono 16 kHz waveform to its partial utterances' mel spectrograms ``(P, 160, 40)``.

        Raises:
            DataError: not a 1-D waveform, or a clip shorter than one 25 ms analysis window.
        """
        waveform = np.asarray(item, dtype=np.float32)
        if waveform.ndim != 1:
            raise DataError(f"ge2e_speaker expects a mono waveform (1-D array), got shape {waveform.shape}")
        if waveform.size < WINDOW:
            raise DataError(f"a clip of {waveform.size} samples ({1000 * waveform.size / SAMPLE_RATE:.1f} ms) is "
                            f"shorter than ge2e_speaker's {1000 * WINDOW // SAMPLE_RATE} ms analysis window")
        waveform = raise_volume(waveform)
        starts = partial_starts(waveform.size)
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        if end > waveform.size:
            waveform = np.pad(waveform, (0, end - waveform.size))
        mel = self.mel_spectrogram(torch.from_numpy(waveform))  # (T, 40)
        return torch.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])  # (P, 160, 40)

    def mel_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """librosa's ``melspectrogram`` with Resemblyzer's settings: power, not log; ``(N,) -> (T, 40)``."""
        stft = torch.stft(waveform, n_fft=WINDOW, hop_length=HOP, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)  # (201, T)
        return (stft.abs() ** 2).T @ self.mel_filters  # (T, 40)

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """All partials of the batch ``(P, 160, 40)`` and the clip each belongs to ``(P,)``."""
        if not samples:
            raise DataError("cannot collate an empty list of ge2e_speaker samples")
        owner = torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(samples)])
        return {"partials": torch.cat(samples), "owner": owner}

    def embed_partials(self, partials: torch.Tensor) -> torch.Tensor:
        """``(P, 160, 40) -> (P, 256)``: the last hidden state of the last layer, Linear, ReLU, L2-normalised."""
        x = partials
        for lstm in self.lstms:
            x, (hidden, _) = lstm(x)  # (P, 160, 256), (1, P, 256)
        raw = torch.relu(self.linear(hidden[-1]))  # (P, 256)
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def forward_features(self, partials: torch.Tensor, owner: torch.Tensor,  # type: ignore[override]
                         **_: torch.Tensor) -> torch.Tensor:
        """The clips' embeddings ``(B, 256)``: the L2-normalised mean of each clip's partial embeddings."""
        embedded = self.embed_partials(partials)  # (P, 256)
        num_clips = int(owner.max()) + 1
        sums = embedded.new_zeros(num_clips, embedded.shape[1]).index_add(0, owner, embedded)  # (B, 256)
        return sums / sums.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        """``lstm0``, ``lstm1``, ``lstm2``, ``projection``."""
        return [*((f"lstm{i}", lstm) for i, lstm in enumerate(self.lstms)), ("projection", self.linear)]


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Resemblyzer's state dict, its stacked LSTM's ``lstm.*_l{k}`` renamed to our ``lstms.{k}.*_l0``.

    Raises:
        BackboneError: the file is unreadable or not the GE2E encoder.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise BackboneError(f"cannot read the GE2E weights {path}: {err}") from err
    renamed = {}
    for key, value in state.items():
        if key.startswith("lstm."):
            name, layer = key.removeprefix("lstm.").rsplit("_l", 1)
            renamed[f"lstms.{layer}.{name}_l0"] = value
        elif key.startswith("linear."):
            renamed[key] = value
        # similarity_weight / similarity_bias scale the GE2E training loss only
    return renamed


def build_ge2e_speaker(spec: BackboneSpec) -> GE2ESpeakerBackbone:
    """The GE2E speaker encoder with Resemblyzer's packaged weights, or randomly initialised."""
    return GE2ESpeakerBackbone(spec, packaged_ge2e_weights() if spec.pretrained else None)
