"""Backbones from Hugging Face transformers: ``hf:NAME_OR_PATH`` for text, vision and audio models.

The model is loaded with ``AutoModel`` and its preprocessor with ``AutoTokenizer`` /
``AutoImageProcessor`` / ``AutoFeatureExtractor``. A hub name needs internet (set
``HF_HUB_OFFLINE=1`` to forbid it); a local directory saved with ``save_pretrained`` works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import BACKBONES, Backbone, BackboneSpec, TokenFeatures, directory_stamp, masked_mean
from transferkit.backbones.groups import layer_groups_around_blocks
from transferkit.backbones.image import ImageBackbone, ImagePreprocessing
from transferkit.backbones.split import BackboneSplit, TopBlocks, additive_mask, blocks_in_top
from transferkit.errors import BackboneError


@dataclass
class WordTokens:
    """Pre-split sentences as token windows, with the word of every token.

    Attributes:
        batch: ``input_ids`` and ``attention_mask`` ``(N, T)``, one row per window (N >= number of sentences).
        word_ids: ``(N, T)`` long: the index of the token's word in its sentence; -1 on special and
            padding tokens. A word's sub-tokens share its index; the first of them carries its label.
        sentence_ids: ``(N,)`` long: the sentence each window comes from, in order.
    """

    batch: dict[str, torch.Tensor]
    word_ids: torch.Tensor
    sentence_ids: torch.Tensor


# encoders whose layers take only (hidden states, additive attention mask), so they can be cut between layers
# (MPNet adds a relative position bias in every layer, DeBERTa relative embeddings: not these)
CUTTABLE_TEXT_MODELS = frozenset({"bert", "roberta", "xlm-roberta", "electra", "camembert"})


def _layer_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple, 5 the tensor


def _max_length(config: Any, spec: BackboneSpec) -> int:
    """The ``max_length`` option (default 128), within the model's position embeddings.

    Raises:
        BackboneError: a ``max_length`` longer than the model has positions for (it would fail
            with a tensor-size error in the middle of the first batch).
    """
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and "roberta" in str(getattr(config, "model_type", "")):
        positions -= 2  # RoBERTa's positions start after the padding index
    if "max_length" not in spec.options:
        return min(128, positions) if isinstance(positions, int) and positions > 0 else 128
    given = int(spec.options["max_length"])
    if isinstance(positions, int) and given > positions:
        raise BackboneError(f"max_length {given} is more than the {positions} positions of {spec.name}; "
                            f"pass --max-length {positions} or less")
    return given


class TextTransformerBackbone(Backbone):
    """A transformers encoder (BERT, MiniLM, RoBERTa, ...) with mean or CLS pooling.

    Options: ``max_length`` (tokens, default 128), ``pooling`` (``mean`` or ``cls``), ``normalize``
    (L2-normalise the pooled embedding, as sentence-transformers models with a ``Normalize`` module
    do; default False).
    """

    modality = "text"
    outputs = frozenset({"pooled", "tokens"})

    def __init__(self, model: nn.Module, tokenizer: Any, spec: BackboneSpec) -> None:
        super().__init__()
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # BERT's next-sentence pooler is unused by mean/CLS pooling
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.num_features = int(model.config.hidden_size)
        self.max_length = _max_length(model.config, spec)
        self.pooling = str(spec.options.get("pooling", "mean"))
        if self.pooling not in ("mean", "cls"):
            raise BackboneError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")
        self.normalize = bool(spec.options.get("normalize", False))

    def transform(self, item: str, train: bool = False) -> str:
        return item

    def collate(self, samples: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(samples), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def tokenize_words(self, sentences: list[list[str]], *, overlap: int | None = None) -> WordTokens:
        """Tokenise pre-split sentences into windows of at most ``max_length`` tokens, and say which
        word each sub-word token comes from.

        This is what token-level tasks (named entities) need to carry word labels to sub-word tokens
        and predictions back to words. A sentence longer than one window is not truncated: it is split
        into several windows that share ``overlap`` tokens, so a word near a cut is seen with context on
        both sides (its label is then read from the window of the caller's choice).

        Args:
            sentences: one list of words per sentence.
            overlap: tokens shared by consecutive windows of one sentence; default a quarter of a window.

        Returns:
            The windows' batch for ``forward_tokens`` / ``forward_features``, each window's word ids
            and the sentence it comes from (see ``WordTokens``).

        Raises:
            BackboneError: the tokenizer is not a fast (Rust) tokenizer, which alone tracks words, or
                ``overlap`` leaves no room for new tokens in a window.

        Example:
            >>> words = backbone.tokenize_words([["Obama", "visited", "Paris"]])  # doctest: +SKIP
            >>> tokens = backbone.forward_tokens(**words.batch)  # (1, T, D); words.word_ids (1, T)  # doctest: +SKIP
        """
        if not getattr(self.tokenizer, "is_fast", False):
            raise BackboneError(f"backbone {self.spec.name!r} has a slow tokenizer, which cannot map tokens "
                                "to words; save the model with its fast tokenizer (tokenizer.json)")
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=False)  # word tokens per window
        overlap = room // 4 if overlap is None else overlap
        if not 0 <= overlap < room:
            raise BackboneError(f"overlap={overlap} must be between 0 and {room - 1}: a window of "
                                f"max_length={self.max_length} holds {room} tokens besides the special ones")
        encoded = self.tokenizer([list(words) for words in sentences], is_split_into_words=True, padding=True,
                                 truncation=True, max_length=self.max_length, stride=overlap,
                                 return_overflowing_tokens=True, return_tensors="pt")
        word_ids = torch.tensor([[-1 if word is None else word for word in encoded.word_ids(row)]
                                 for row in range(len(encoded["input_ids"]))], dtype=torch.long)  # (N, T)
        return WordTokens(batch={"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]},
                          word_ids=word_ids, sentence_ids=encoded["overflow_to_sample_mapping"].long())

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       **_: torch.Tensor) -> TokenFeatures:
        """The encoder's last hidden states ``(B, T, D)``, masked to the real tokens (special tokens included)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
        return TokenFeatures(hidden, attention_mask.bool())

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         **_: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_tokens(input_ids=input_ids, attention_mask=attention_mask))

    def pool(self, tokens: TokenFeatures) -> torch.Tensor:
        """The sentence embedding of token features: ``pooling`` (mean of real tokens, or CLS), then
        L2-normalised if ``normalize``. ``(B, T, D) -> (B, D)``."""
        hidden = tokens.features
        pooled = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, tokens.mask)  # (B, D)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def split_top(self, train_last_k: int) -> BackboneSplit | None:
        """The encoder cut before the blocks of its last ``train_last_k`` layer groups (see ``backbones.split``);
        None for encoders outside ``CUTTABLE_TEXT_MODELS``."""
        model = self.model
        blocks = getattr(getattr(model, "encoder", None), "layer", None)
        cuttable = getattr(model.config, "model_type", None) in CUTTABLE_TEXT_MODELS
        if not cuttable or not isinstance(blocks, nn.ModuleList):
            return None
        groups = self.layer_groups()
        cut = len(blocks) - blocks_in_top(groups, train_last_k, blocks)

        def run(states: torch.Tensor, mask: torch.Tensor, layers: Any) -> torch.Tensor:
            keys = additive_mask(mask, states.dtype)  # (B, 1, 1, T)
            for layer in layers:
                states = _layer_output(layer(states, attention_mask=keys))
            return states  # (B, T, D)

        def bottom(input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: torch.Tensor) -> TokenFeatures:
            mask = attention_mask.bool()
            return TokenFeatures(run(model.embeddings(input_ids=input_ids), mask, blocks[:cut]), mask)

        top = TopBlocks(self, lambda states, mask: run(states, mask, blocks[cut:]), groups[len(groups) - train_last_k:])
        return BackboneSplit(bottom=bottom, top=top)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        groups = layer_groups_around_blocks(self.model)
        # MPNet's encoder keeps the relative position bias after its layers, but computes it once before the first
        # layer and adds it in every one: it is input side, so it joins the stem rather than forming a "neck"
        bias = getattr(getattr(self.model, "encoder", None), "relative_attention_bias", None)
        stem, neck = groups[0][1], groups[-1][1]
        if isinstance(bias, nn.Module) and isinstance(stem, nn.ModuleList) and isinstance(neck, nn.ModuleList) \
                and groups[-1][0] == "neck" and any(m is bias for m in neck):
            rest = nn.ModuleList(m for m in neck if m is not bias)
            groups = [("stem", nn.ModuleList([*stem, bias])), *groups[1:-1]]
            if any(True for _ in rest.parameters()):
                groups.append(("neck", rest))
        return groups


class VisionTransformerBackbone(ImageBackbone):
    """A transformers vision model (ViT, ConvNeXt, ...) pooled to ``(B, D)``."""

    def __init__(self, model: nn.Module, processor: Any, spec: BackboneSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        config = model.config
        self.num_features = int(getattr(config, "hidden_size", None) or config.hidden_sizes[-1])
        size = processor.size if processor is not None else {}
        side = int(spec.options.get("image_size", size.get("height") or size.get("shortest_edge") or 224))
        mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
        std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
        self.preprocessing = ImagePreprocessing(image_size=side, mean=mean, std=std,
                                                hflip=bool(spec.options.get("hflip", True)),
                                                center_crop=bool(spec.options.get("center_crop", True)))

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)  # (B, D)
        return out.last_hidden_state.mean(1)  # (B, T, D) -> (B, D)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return layer_groups_around_blocks(self.model)


class AudioTransformerBackbone(Backbone):
    """A transformers speech encoder on raw waveforms (wav2vec2, HuBERT, WavLM, ...)."""

    modality = "audio"
    outputs = frozenset({"pooled", "tokens"})

    def __init__(self, model: nn.Module, feature_extractor: Any, spec: BackboneSpec) -> None:
        super().__init__()
        self.model, self.feature_extractor, self.spec = model, feature_extractor, spec
        self.num_features = int(model.config.hidden_size)
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", 16000))

    def transform(self, item: np.ndarray, train: bool = False) -> torch.Tensor:
        return torch.as_tensor(np.asarray(item, dtype=np.float32))

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        encoded = self.feature_extractor([s.numpy() for s in samples], sampling_rate=self.sample_rate,
                                         padding=True, return_attention_mask=True, return_tensors="pt")
        return {"input_values": encoded["input_values"], "attention_mask": encoded["attention_mask"]}

    def forward_tokens(self, input_values: torch.Tensor, attention_mask: torch.Tensor,
                       **_: torch.Tensor) -> TokenFeatures:
        """Frame features ``(B, T, D)`` (one per 20 ms for wav2vec2-like models), masked to each clip's frames."""
        hidden = self.model(input_values=input_values, attention_mask=attention_mask).last_hidden_state
        frames = hidden.shape[1]  # (B, T, D)
        mask = self.model._get_feature_vector_attention_mask(frames, attention_mask)  # (B, T)
        return TokenFeatures(hidden, mask.bool())

    def forward_features(self, input_values: torch.Tensor, attention_mask: torch.Tensor,
                         **_: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_tokens(input_values=input_values, attention_mask=attention_mask))

    def pool(self, frames: TokenFeatures) -> torch.Tensor:
        """The mean of each clip's frames: ``(B, T, D) -> (B, D)``."""
        return masked_mean(frames.features, frames.mask)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return layer_groups_around_blocks(self.model)


def load_hf_backbone(name_or_path: str, spec: BackboneSpec) -> Backbone:
    """Load ``name_or_path`` with transformers and wrap it by the modality its config declares."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path)
    except Exception as exc:  # transformers raises OSError/ValueError/HF errors here
        raise BackboneError(f"cannot load transformers model {name_or_path!r}: {exc}") from exc
    if config.model_type == "whisper":
        from transferkit.backbones.whisper import whisper_backbone_from_hf

        return whisper_backbone_from_hf(name_or_path, spec)
    from transferkit.backbones.decoder import generative_kind, load_generative

    generative = generative_kind(config)  # a causal LM or an encoder-decoder: it can also generate
    if generative is not None:
        return load_generative(name_or_path, config, generative, spec)
    model = (transformers.AutoModel.from_pretrained(name_or_path) if spec.pretrained
             else transformers.AutoModel.from_config(config))
    main_input = getattr(model, "main_input_name", "input_ids")
    if main_input == "input_ids":
        tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
        return TextTransformerBackbone(model, tokenizer, spec)
    if main_input == "pixel_values":
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(name_or_path)
        except OSError:
            processor = None
        return VisionTransformerBackbone(model, processor, spec)
    if main_input == "input_values":
        extractor = transformers.AutoFeatureExtractor.from_pretrained(name_or_path)
        return AudioTransformerBackbone(model, extractor, spec)
    raise BackboneError(f"transformers model {name_or_path!r} takes {main_input!r}; "
                        "supported inputs are input_ids, pixel_values and input_values")


@BACKBONES.register("hf:", outputs=("pooled", "tokens"), modality=None, offline=False,
                    description="any transformers AutoModel by hub name or local directory (text, vision, audio)")
def hf_backbone(spec: BackboneSpec) -> Backbone:
    name_or_path = spec.name.split(":", 1)[1]
    backbone = load_hf_backbone(name_or_path, spec)
    if Path(name_or_path).is_dir():  # re-saved local weights must not reuse cached features
        backbone.weights_stamp = directory_stamp(Path(name_or_path))
    return backbone
