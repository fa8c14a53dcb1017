"""Classification by generation: a decoder reads a prompt and the classes are the words it would write next.

Each class is verbalised as a word (its name by default). The input is put in a prompt template that
asks the question and lists the words; the decoder's state after the prompt (the last token's,
which is the backbone's pooled feature) goes through its own next-token head restricted to the first
token of each label word, and a softmax over those logits gives the class probabilities. So the
classifier is the language model's output layer, not a new head: with no training it is a zero-shot
classifier, and with LoRA (the default) the adapters and those rows are tuned on the labels
(Schick and Schütze's pattern-verbaliser pairs, with a causal LM).

Label words are scored by their first token: two words that begin with the same token cannot be
told apart and are refused (choose other words with ``words``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from transferkit.errors import ConfigError
from transferkit.heads import TransferModel, set_linear_head
from transferkit.strategies.base import STRATEGIES, FitConfig, FitData, StrategyOutcome
from transferkit.strategies.lora import LoraSettings, lora

DEFAULT_TEMPLATE = "{text}\n\nWhich one of these words describes the text above: {labels}? Answer with the word only."


@dataclass(frozen=True)
class LabelWordsConfig:
    """The ``label_words`` strategy's config.

    Attributes:
        words: the word of each class, as ``CLASS=WORD`` pairs (classes not named keep their name);
            None: the class names.
        template: the prompt, with ``{text}`` where the input goes and optionally ``{labels}``, the label
            words joined by commas. Decoders with a chat template get it as the user's turn.
        zero_shot: no training: classify with the pretrained model as it is.
        r, alpha, dropout: the LoRA adapters trained otherwise (on the backbone's ``lora_modules``).
    """

    words: tuple[str, ...] | None = None
    template: str = DEFAULT_TEMPLATE
    zero_shot: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise ConfigError(f"the label_words template {self.template!r} has no '{{text}}' where the input goes")


def label_words(classes: list[str], pairs: tuple[str, ...] | None) -> list[str]:
    """The word of each class: the class name, or the word ``pairs`` (``CLASS=WORD``) gives it.

    Raises:
        ConfigError: a pair without ``=``, an unknown class, or an empty word.
    """
    chosen: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, word = pair.partition("=")
        if not sep or not word.strip():
            raise ConfigError(f"label word {pair!r} is not CLASS=WORD")
        if name not in classes:
            raise ConfigError(f"label word {pair!r} names no class (classes: {', '.join(classes)})")
        chosen[name] = word.strip()
    return [chosen.get(name, name) for name in classes]


def first_tokens(backbone: object, template: str, words: list[str]) -> list[int]:
    """The token each word starts with when the model writes it right after the prompt.

    Raises:
        ConfigError: two words start with the same token.
    """
    prompt = backbone.transform("x")  # type: ignore[attr-defined]
    separator = "" if prompt.endswith(("\n", " ")) else " "
    before = backbone.tokenizer(prompt)["input_ids"]  # type: ignore[attr-defined]
    found = []
    for word in words:
        after = backbone.tokenizer(prompt + separator + word)["input_ids"]  # type: ignore[attr-defined]
        found.append(int(after[len(before)] if after[: len(before)] == before else after[len(before) - 1]))
    for i, token in enumerate(found):
        for j in range(i):
            if found[j] == token:
                raise ConfigError(f"label words {words[j]!r} and {words[i]!r} start with the same token; "
                                  "choose words that differ from their start (--param words=CLASS=WORD,...)")
    return found


@STRATEGIES.register("label_words", config=LabelWordsConfig,
                     description="decoders only: classes as words the decoder writes after a prompt; its next-token "
                     "head on those words is the classifier (zero-shot, or tuned with LoRA)")
def label_words_strategy(model: TransferModel, data: FitData, config: FitConfig,
                         params: LabelWordsConfig) -> StrategyOutcome:
    """Set the prompt, point the head at the label words' rows of the next-token head, then tune with LoRA
    (unless ``zero_shot``).

    Raises:
        ConfigError: the backbone is not a decoder pooled by its last token, the task is not
            classification, or two label words start with the same token.
    """
    backbone = model.backbone
    if not getattr(backbone, "generative", False) or getattr(backbone, "pooling", None) is None:
        raise ConfigError(f"label_words needs a decoder (smollm2_135m, or an hf: causal LM); {backbone.spec.name!r} "
                          "is not one: use linear_probe, finetune or lora")
    if backbone.pooling != "last":
        raise ConfigError(f"label_words reads the decoder's last token; {backbone.spec.name!r} is pooled by "
                          f"{backbone.pooling!r}")
    if data.objective.name != "classification":
        raise ConfigError(f"label_words classifies; the {data.objective.name} task needs another strategy")
    words = label_words(data.classes, params.words)
    template = params.template.replace("{labels}", ", ".join(words))
    # the prompt is part of the backbone's input: set in its spec, the run directory rebuilds it
    backbone.spec = replace(backbone.spec, options={**backbone.spec.options, "prompt_template": template})
    backbone.prompt_template = template
    tokens = first_tokens(backbone, template, words)
    with torch.no_grad():
        rows = backbone.pretrained_head.weight[tokens].detach().float().numpy()  # (C, D)
    set_linear_head(model.head, rows, torch.zeros(len(tokens)).numpy())
    info = {"label_words": dict(zip(data.classes, words, strict=True)), "prompt_template": template,
            "label_tokens": tokens}
    if params.zero_shot:
        for p in model.parameters():
            p.requires_grad_(False)
        return StrategyOutcome(history=[], backbone_trained=False, info={**info, "zero_shot": True})
    # the head starts as the label words' rows: it moves no faster than the adapters
    outcome = lora(model, data, replace(config, head_lr_scale=1.0),
                   LoraSettings(r=params.r, alpha=params.alpha, dropout=params.dropout))
    outcome.info = {**info, **outcome.info}
    return outcome
