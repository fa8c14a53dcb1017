"""Generative language models as backbones: GPT-style decoders and T5-style encoder-decoders.

Both honour the Backbone contract (pooled features, token features, layer groups), so that every
strategy works on them for classification, and both can also *generate*: they say how a prompt and
its completion become a training batch whose targets are the completion's tokens only
(``lm_batch``), give next-token logits through their language-model head (``source_logits``, the
source task's head in the sense of ``Backbone.pretrained_head``) and complete prompts
(``generate``). The ``generation`` task and the ``label_words`` strategy build on this.

* ``DecoderBackbone``: a causal LM (``AutoModelForCausalLM``: Llama, SmolLM2, GPT-2, ...). Pooled
  by the last non-padding token (the state from which the model would write the next word) or the
  mean of the tokens (option ``pooling``).
* ``Seq2SeqBackbone``: an encoder-decoder (``AutoModelForSeq2SeqLM``: T5, BART). Pooled features
  are the encoder's mean; the completion is decoded by the decoder.

Options (``BackboneSpec.options``): ``max_length`` (tokens of a prompt and its completion, default
256), ``pooling`` (``last`` or ``mean``), ``chat`` (wrap prompts in the tokenizer's chat template as
a user turn; default on when the tokenizer has one), ``prompt_template`` (a text with ``{text}``,
applied to classification inputs; the ``label_words`` strategy sets it).
The default ``max_length`` is 256 or the model's context, if shorter.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import IGNORE_INDEX, Backbone, BackboneSpec, TokenFeatures, masked_mean
from transferkit.backbones.groups import layer_groups_around_blocks
from transferkit.errors import BackboneError, DataError

DEFAULT_MAX_LENGTH = 256
# the attention projections of Llama-family decoders: LoRA adapts all four (query, key, value, output)
DECODER_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def context_length(config: Any) -> int | None:
    """The positions a model's config allows (None when it does not say)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class GenerativeBackbone(Backbone):
    """What decoders and encoder-decoders share: options, prompts, completions and generation.

    Subclasses implement ``lm_batch`` and ``forward_tokens``; ``generate`` runs transformers' own
    ``generate`` on the wrapped model.
    """

    modality = "text"
    outputs = frozenset({"pooled", "tokens"})
    generative = True

    def __init__(self, model: nn.Module, tokenizer: Any, spec: BackboneSpec) -> None:
        super().__init__()
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        if tokenizer.pad_token is None:  # GPT-2 and many decoders have none: padding is masked anyway
            tokenizer.pad_token = tokenizer.eos_token
        self.pretrained_head = model.get_output_embeddings()  # the next-token head: the source task's
        config = model.config
        self.num_features = int(getattr(config, "hidden_size", None) or config.d_model)
        self.context = context_length(config)
        default = DEFAULT_MAX_LENGTH if self.context is None else min(DEFAULT_MAX_LENGTH, self.context)
        self.max_length = int(spec.options.get("max_length", default))
        if self.context is not None and self.max_length > self.context:
            raise BackboneError(f"max_length {self.max_length} is more than the {self.context} positions of "
                                f"{spec.name}; pass --max-length {self.context} or less")
        self.chat = bool(spec.options.get("chat", getattr(tokenizer, "chat_template", None) is not None))
        template = spec.options.get("prompt_template")
        if template is not None and "{text}" not in str(template):
            raise BackboneError(f"prompt_template {template!r} has no '{{text}}' where the input goes")
        self.prompt_template = None if template is None else str(template)

    # -- text in ----------------------------------------------------------------------------------
    def prompt(self, text: str) -> str:
        """``text`` as the model is prompted with it: the user turn of its chat template when ``chat``."""
        if not self.chat:
            return text
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def transform(self, item: str, train: bool = False) -> str:
        """A classification input: as it is, or put in ``prompt_template`` and prompted."""
        if self.prompt_template is None:
            return str(item)
        return self.prompt(self.prompt_template.replace("{text}", str(item)))

    def collate(self, samples: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(samples), padding=True, truncation=True, max_length=self.max_length,
                                 padding_side="right", return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def token_ids(self, text: str) -> list[int]:
        """The token ids of ``text`` without special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The tokens the model reads for ``prompt`` (prompted, with the special tokens it adds)."""
        return list(self.tokenizer(self.prompt(prompt))["input_ids"])

    def completion_ids(self, completion: str) -> list[int]:
        """The tokens of a completion, ended by the end-of-sequence token (what stops generation)."""
        return [*self.token_ids(completion), int(self.tokenizer.eos_token_id)]

    def check_prompts(self, prompts: Sequence[str], origins: Sequence[str], *, room: int = 1) -> list[list[int]]:
        """Each prompt's tokens, after checking that it leaves ``room`` tokens in ``max_length``.

        Raises:
            DataError: a prompt too long for the context (names its origin and its length).
        """
        encoded = []
        for prompt, origin in zip(prompts, origins, strict=True):
            ids = self.prompt_ids(prompt)
            if len(ids) + room > self.max_length:
                raise DataError(f"{origin}: the prompt is {len(ids)} tokens long, which leaves no room for "
                                f"{room} completion tokens in the context of {self.max_length} (max_length); "
                                "shorten it or pass a larger --max-length")
            encoded.append(ids)
        return encoded

    # -- the backbone contract ----------------------------------------------------------------------
    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         **_: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_tokens(input_ids=input_ids, attention_mask=attention_mask))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return layer_groups_around_blocks(self.model)

    # -- generation ---------------------------------------------------------------------------------
    def lm_batch(self, prompts: Sequence[str], completions: Sequence[str],
                 origins: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:  # pragma: no cover
        """The batch of prompts and completions for ``forward_tokens`` and its next-token targets, which
        are ``IGNORE_INDEX`` everywhere but on the completion's tokens."""
        raise NotImplementedError

    def source_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Next-token logits of token features ``(B, T, D) -> (B, T, V)``."""
        return self.pretrained_head(features)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 seed: int = 0, batch_size: int = 8) -> list[str]:
        """Complete each prompt: greedy when ``temperature`` is 0, else sampled at that temperature.

        Raises:
            DataError: a prompt too long to leave room for ``max_new_tokens``.
        """
        self.check_prompts(prompts, [f"prompt {i + 1}" for i in range(len(prompts))], room=1)
        self.eval()
        torch.manual_seed(seed)
        texts: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = [self.prompt(p) for p in prompts[start:start + batch_size]]
            encoded = self.tokenizer(chunk, padding=True, padding_side="left", return_tensors="pt",
                                     add_special_tokens=True)
            device = next(self.model.parameters()).device
            new = self.max_new(encoded["input_ids"].shape[1], max_new_tokens)
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
            with warnings.catch_warnings():  # generation_config defaults (top_p, ...) warn when unused
                warnings.simplefilter("ignore")
                out = self.model.generate(input_ids=encoded["input_ids"].to(device),
                                          attention_mask=encoded["attention_mask"].to(device),
                                          max_new_tokens=new, pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id, **sampling)
            texts += [text.strip() for text in self.tokenizer.batch_decode(self.new_tokens(out, encoded),
                                                                           skip_special_tokens=True)]
        return texts

    def max_new(self, prompt_length: int, asked: int) -> int:
        """The new tokens that fit after a prompt of ``prompt_length`` tokens."""
        return max(1, min(asked, (self.context or prompt_length + asked) - prompt_length))

    def new_tokens(self, out: torch.Tensor, encoded: Any) -> torch.Tensor:
        """The generated tokens of ``generate``'s output, without the prompt."""
        return out[:, encoded["input_ids"].shape[1]:]


class DecoderBackbone(GenerativeBackbone):
    """A GPT-style causal language model (``AutoModelForCausalLM``).

    Pooled features: the last real token's hidden state (``pooling="last"``, default), where a
    decoder has read the whole text, or the mean of the real tokens (``"mean"``). LoRA adapts the
    four attention projections by default (``lora_modules``).
    """

    lora_modules = DECODER_LORA_MODULES

    def __init__(self, model: nn.Module, tokenizer: Any, spec: BackboneSpec) -> None:
        super().__init__(model, tokenizer, spec)
        self.pooling = str(spec.options.get("pooling", "last"))
        if self.pooling not in ("last", "mean"):
            raise BackboneError(f"pooling must be 'last' or 'mean' for a decoder, not {self.pooling!r}")

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       **_: torch.Tensor) -> TokenFeatures:
        """The last hidden states ``(B, T, D)`` of the decoder stack (before its final head)."""
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return TokenFeatures(hidden, attention_mask.bool())

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        """The embeddings, each decoder block, the final norm; then the next-token head where it has weights
        of its own (most decoders tie it to the input embeddings, in the first group)."""
        groups = layer_groups_around_blocks(self.model.base_model)
        grouped = {id(p) for _, module in groups for p in module.parameters()}
        head = self.model.get_output_embeddings()
        if head is not None and any(id(p) not in grouped for p in head.parameters()):
            groups.append(("lm_head", head))
        return groups

    def pool(self, tokens: TokenFeatures) -> torch.Tensor:
        """``(B, T, D) -> (B, D)``: the last real token of each right-padded row, or the mean of the real ones."""
        if self.pooling == "mean":
            return masked_mean(tokens.features, tokens.mask)
        last = tokens.mask.long().sum(1).clamp(min=1) - 1  # (B,)
        return tokens.features[torch.arange(len(last), device=last.device), last]  # (B, D)

    def lm_batch(self, prompts: Sequence[str], completions: Sequence[str],
                 origins: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Prompt and completion as one right-padded sequence; the target at position t is token t + 1
        where that token belongs to the completion (so the loss is the completion's alone)."""
        rows, starts = [], []
        for ids, completion in zip(self.check_prompts(prompts, origins), completions, strict=True):
            rows.append((ids + self.completion_ids(completion))[: self.max_length])  # a long completion is cut
            starts.append(len(ids))
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        targets = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            targets[i, start - 1: len(row) - 1] = torch.tensor(row[start:])  # (T,) next-token targets
        return {"input_ids": input_ids, "attention_mask": mask}, targets


class Seq2SeqBackbone(GenerativeBackbone):
    """A T5-style encoder-decoder (``AutoModelForSeq2SeqLM``): the encoder reads the prompt, the decoder
    writes the completion. Pooled features are the mean of the encoder's states; token features are the
    encoder's, or the decoder's when the batch holds the completion (``decoder_input_ids``)."""

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       decoder_input_ids: torch.Tensor | None = None,
                       decoder_attention_mask: torch.Tensor | None = None, **_: torch.Tensor) -> TokenFeatures:
        encoded = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if decoder_input_ids is None:
            return TokenFeatures(encoded, attention_mask.bool())  # (B, T, D)
        assert decoder_attention_mask is not None
        decoded = self.model.get_decoder()(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                                           encoder_hidden_states=encoded,
                                           encoder_attention_mask=attention_mask).last_hidden_state
        return TokenFeatures(decoded, decoder_attention_mask.bool())  # (B, T_completion, D)

    def pool(self, tokens: TokenFeatures) -> torch.Tensor:
        return masked_mean(tokens.features, tokens.mask)

    def source_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Next-token logits as the model's own forward computes them (T5 scales tied outputs by d^-0.5,
        BART adds a bias)."""
        config = self.model.config
        if getattr(config, "scale_decoder_outputs", False) or (
                config.model_type == "t5" and getattr(config, "tie_word_embeddings", False)
                and not hasattr(config, "scale_decoder_outputs")):
            features = features * self.num_features ** -0.5
        logits = self.pretrained_head(features)
        bias = getattr(self.model, "final_logits_bias", None)
        return logits if bias is None else logits + bias

    def prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(self.prompt(prompt))["input_ids"])

    def lm_batch(self, prompts: Sequence[str], completions: Sequence[str],
                 origins: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The prompt for the encoder; the completion, shifted right, for the decoder; targets are the
        completion's tokens (padding ignored)."""
        prompt_rows = self.check_prompts(prompts, origins)
        target_rows = [self.completion_ids(c)[: self.max_length] for c in completions]
        pad = int(self.tokenizer.pad_token_id)

        def padded(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
            length = max(len(row) for row in rows)
            ids = torch.full((len(rows), length), value, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
            return ids, mask

        input_ids, mask = padded(prompt_rows, pad)
        targets, target_mask = padded(target_rows, IGNORE_INDEX)
        start = self.model.config.decoder_start_token_id
        start = pad if start is None else int(start)
        count = len(target_rows)
        decoder_input_ids = torch.cat([torch.full((count, 1), start, dtype=torch.long),
                                       targets[:, :-1].clamp(min=0)], dim=1)  # the completion shifted right
        decoder_mask = torch.cat([torch.ones((count, 1), dtype=torch.long), target_mask[:, :-1]], dim=1)
        batch = {"input_ids": input_ids, "attention_mask": mask, "decoder_input_ids": decoder_input_ids,
                 "decoder_attention_mask": decoder_mask}
        return batch, targets

    def max_new(self, prompt_length: int, asked: int) -> int:
        return max(1, min(asked, self.max_length))

    def new_tokens(self, out: torch.Tensor, encoded: Any) -> torch.Tensor:
        return out  # an encoder-decoder's output is the completion alone


def generative_kind(config: Any) -> type[GenerativeBackbone] | None:
    """The backbone class for a transformers config that describes a generative model, else None.

    An encoder-decoder (T5, BART; not Whisper, which has its own backbone) or a model saved as a causal
    LM (its ``architectures`` end in ``ForCausalLM`` or ``LMHeadModel``).
    """
    if getattr(config, "is_encoder_decoder", False) and config.model_type != "whisper":
        return Seq2SeqBackbone
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in (getattr(config, "architectures", None) or [])):
        return DecoderBackbone
    return None


def load_generative(name_or_path: str, config: Any, kind: type[GenerativeBackbone],
                    spec: BackboneSpec) -> GenerativeBackbone:
    """Load a causal LM or encoder-decoder by hub name or local folder with transformers."""
    import transformers

    auto = (transformers.AutoModelForSeq2SeqLM if kind is Seq2SeqBackbone else transformers.AutoModelForCausalLM)
    try:
        model = auto.from_pretrained(name_or_path) if spec.pretrained else auto.from_config(config)
        tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load transformers model {name_or_path!r}: {exc}") from exc
    return kind(model, tokenizer, spec)
