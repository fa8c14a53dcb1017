"""Text generation: a completion per prompt, learned by a generative backbone's own language-model head.

The data is a table (JSONL, CSV or TSV) of prompts and completions: columns ``prompt`` and
``completion``, or any two columns named with ``--text-column`` (the prompt) and ``--label-column``
(the completion). The loss is the cross-entropy of the completion's tokens alone: the prompt's
tokens are context, not targets. The head is the backbone's next-token head (tied to its
embeddings in most models), so a LoRA run stores only the adapter; prediction generates (greedy by
default) and evaluation scores exact match, ROUGE-L and chrF beside the same model before tuning.

Example:
    >>> est = TransferEstimator(backbone="smollm2_135m", strategy="lora", task="generation")  # doctest: +SKIP
    >>> est.fit(["Title of: great phone, long battery"], ["Great phone"]).predict(["Title of: ..."])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import BackboneError, ConfigError, DataError
from transferkit.tasks.base import IGNORE_INDEX, TASKS, ProbeFit, Task

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from transferkit.backbones.base import Backbone
    from transferkit.data import Samples
    from transferkit.heads import TransferModel

PROMPT_COLUMN, COMPLETION_COLUMN = "prompt", "completion"
TABLE_EXTENSIONS = frozenset({".jsonl", ".ndjson", ".json", ".csv", ".tsv"})
DEFAULT_MAX_NEW_TOKENS = 64


def require_generative(backbone: Backbone, what: str) -> Any:
    """``backbone`` if it can generate (a decoder or an encoder-decoder).

    Raises:
        BackboneError: it cannot (names it and the backbones that can).
    """
    if not getattr(backbone, "generative", False):
        raise BackboneError(f"{what} needs a generative backbone (a decoder such as smollm2_135m, or an hf: causal "
                            f"or sequence-to-sequence LM); {backbone.spec.name!r} is an encoder")
    return backbone


class LanguageModelHead(nn.Module):
    """The backbone's own next-token head on its token features: ``(B, T, D) -> (B, T, V)``.

    It holds no weights of its own (the backbone's output embedding is the head), so it is bound to
    the backbone when the model is put together (``TransferModel`` calls ``bind_backbone``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.logits_of = None

    def bind_backbone(self, backbone: Backbone) -> None:
        self.logits_of = require_generative(backbone, "the generation task").source_logits

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        assert self.logits_of is not None, "a LanguageModelHead is used only inside a TransferModel"
        return self.logits_of(features)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, prompts: Sequence[str], completions: Sequence[str], origins: Sequence[str]) -> None:
        self.rows = list(zip(prompts, completions, origins, strict=True))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> tuple[str, str, str]:
        return self.rows[index[0] if isinstance(index, tuple) else index]


@TASKS.register("generation", description="a completion per prompt: the language-model loss on the completion's "
                "tokens, generation, exact match / ROUGE-L / chrF beside the untuned model")
class Generation(Task):
    """Targets are the completions themselves; nothing is fitted on them but their presence."""

    output = "tokens"
    score_name = "token_accuracy"
    probabilistic = False
    # without --strategy, fit trains LoRA adapters (the probe has nothing to fit here)
    default_fit = MappingProxyType({"strategy": "lora", "batch_size": 8})

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, temperature: float = 0.0) -> None:
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.ready = False

    # -- inputs -----------------------------------------------------------------------------------
    def read_data(self, path: Path) -> Samples | None:
        """Prompts and completions of a table with ``prompt`` and ``completion`` columns; None for other
        tables (the generic reader then takes ``--text-column`` and ``--label-column``).

        Raises:
            DataError: an empty prompt or completion (names the line or row).
        """
        from transferkit.data import Samples
        from transferkit.data.samples import SkipLog
        from transferkit.data.tables import _load_frame

        if path.suffix.lower() not in TABLE_EXTENSIONS or not path.is_file():
            return None
        frame, origins = _load_frame(path, SkipLog("fail", str(path)))
        if not {PROMPT_COLUMN, COMPLETION_COLUMN} <= {str(c) for c in frame.columns}:
            return None
        prompts = [_text(value) for value in frame[PROMPT_COLUMN]]
        completions = [_text(value) for value in frame[COMPLETION_COLUMN]]
        for prompt, origin in zip(prompts, origins, strict=True):
            if not prompt.strip():
                raise DataError(f"{origin}: the prompt is empty")
        if not prompts:
            raise DataError(f"no rows in {path}")
        return Samples(items=prompts, labels=completions, modality="text", origins=origins)

    def make_loader(self, samples: Samples, backbone: Backbone, targets: Sequence[Any] | None, *, train: bool,
                    batch_size: int, seed: int = 0) -> DataLoader:
        """Batches of prompt + completion (``lm_batch``) with next-token targets on the completion only.

        Raises:
            DataError: a prompt too long for the context (checked for every sample before training).
        """
        from torch.utils.data import DataLoader

        from transferkit.features import EpochSampler

        generator = require_generative(backbone, "the generation task")
        if targets is None:
            raise DataError("the generation task trains on completions; none were given")
        generator.check_prompts(samples.items, samples.origins)

        def collate(rows: list[tuple[str, str, str]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
            prompts, completions, origins = zip(*rows, strict=True)
            return generator.lm_batch(prompts, completions, origins)

        return DataLoader(_Pairs(samples.items, list(targets), samples.origins), batch_size=batch_size,
                          sampler=EpochSampler(len(samples), seed) if train else None, collate_fn=collate,
                          generator=torch.Generator().manual_seed(seed))

    def probe_data(self, backbone: Backbone, samples: Samples, targets: Sequence[Any], *, batch_size: int,
                   use_cache: bool, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError("the generation task trains the language model itself: use --strategy lora or finetune, "
                          "not a linear probe")

    def predict_outputs(self, model: TransferModel, samples: Samples, *, batch_size: int = 32, use_cache: bool = True,
                        progress: bool = False) -> np.ndarray:
        """The completion of every prompt, ``(N,)`` strings."""
        return self.completions(model.backbone, samples, batch_size=batch_size)

    def completions(self, backbone: Backbone, samples: Samples, *, batch_size: int = 32) -> np.ndarray:
        """What ``backbone`` writes after each prompt of ``samples``, ``(N,)`` strings."""
        generator = require_generative(backbone, "the generation task")
        texts = generator.generate(list(samples.items), max_new_tokens=self.max_new_tokens,
                                   temperature=self.temperature, batch_size=min(batch_size, 16))
        return np.array(texts, dtype=object)

    # -- targets ----------------------------------------------------------------------------------
    def fit_targets(self, labels: Sequence[str], *, origins: Sequence[str] | None = None) -> Generation:
        if not labels:
            raise DataError("no prompts and completions to fit")
        self._check_completions(labels, "the training data", origins)
        self.ready = True
        return self

    def encode(self, labels: Sequence[str], *, source: str = "the labels",
               origins: Sequence[str] | None = None) -> np.ndarray:
        self.check_fitted()
        self._check_completions(labels, source, origins)
        return np.array([str(label) for label in labels], dtype=object)

    @staticmethod
    def _check_completions(labels: Sequence[str], source: str, origins: Sequence[str] | None) -> None:
        for index, label in enumerate(labels):
            if not str(label).strip():
                place = origins[index] if origins is not None else f"{source}, sample {index + 1}"
                raise DataError(f"{place}: the completion is empty; every prompt "
                                "needs the text the model should write")

    @property
    def names(self) -> list[str]:
        return ["completion"] if self.ready else []

    def state(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def load_state(self, state: dict[str, Any]) -> None:
        self.max_new_tokens = int(state.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self.temperature = float(state.get("temperature", 0.0))
        self.ready = True

    def set_generation(self, *, max_new_tokens: int | None = None, temperature: float | None = None) -> None:
        """Change how ``predict`` generates: at most ``max_new_tokens`` tokens, sampled at ``temperature``
        (0: greedy).

        Raises:
            ConfigError: a value out of range.
        """
        if max_new_tokens is not None:
            if max_new_tokens < 1:
                raise ConfigError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
            self.max_new_tokens = max_new_tokens
        if temperature is not None:
            if temperature < 0:
                raise ConfigError(f"temperature must be 0 (greedy) or more, not {temperature}")
            self.temperature = temperature

    # -- model ------------------------------------------------------------------------------------
    def num_outputs(self) -> int:
        return 1

    def build_head(self, num_features: int, dropout: float = 0.0) -> nn.Module:
        return LanguageModelHead()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of next-token logits ``(B, T, V)`` on the completion's targets ``(B, T)``."""
        return F.cross_entropy(outputs.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                               reduction=reduction)

    def validation_outputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The predicted next token ``(B, T)``, not the vocabulary's logits (which would not fit in memory
        for a whole validation split)."""
        return outputs.argmax(-1).float()

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The share of completion tokens predicted right (teacher-forced)."""
        predicted = outputs.argmax(-1) if outputs.ndim == 3 else outputs.long()
        kept = targets != IGNORE_INDEX
        return float((predicted[kept] == targets[kept]).float().mean()) if kept.any() else 0.0

    def fit_probe(self, features: np.ndarray, targets: np.ndarray, *, c: float | None, seed: int) -> ProbeFit:
        raise ConfigError("the generation task has no linear probe; use --strategy lora or finetune")

    # -- predictions ------------------------------------------------------------------------------
    def decode(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def predictions(self, scores: np.ndarray) -> np.ndarray:
        return scores

    def metrics(self, labels: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
        from transferkit.evaluate import generation_metrics

        return generation_metrics(list(labels), [str(s) for s in scores])

    def reference_metrics(self, model: TransferModel, samples: Samples, *, batch_size: int = 32) -> dict[str, Any]:
        """The same metrics for the backbone before tuning (the zero-shot model)."""
        with untuned(model) as original:
            return self.metrics(samples.labels or [], self.predict_outputs(original, samples, batch_size=batch_size))

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        def line(name: str, m: dict[str, Any]) -> str:
            return (f"{name}: exact match {m['exact_match']:.3f}  ROUGE-L {m['rouge_l']:.3f}  chrF {m['chrf']:.1f}  "
                    f"({m['count']} prompts)")

        lines = [line("tuned" if "zero_shot" in metrics else "model", metrics)]
        if "zero_shot" in metrics:
            lines.append(line("zero-shot", metrics["zero_shot"]))
        return "\n".join(lines)

    def record(self, scores: np.ndarray, *, top_k: int = 3) -> dict[str, Any]:
        return {"completion": str(scores)}

    def table_row(self, record: dict[str, Any]) -> list[str]:
        return [record["completion"].replace("\n", " ")]


class GenerationExport:
    """How the engines (``export.engine``) run a generation run: generation loops over the model, token by token,
    which one traced graph does not hold, so only the torch engine runs it."""

    output_axes: dict[int, str] = {0: "batch"}

    def example_batches(self, backbone: Backbone) -> list[dict[str, torch.Tensor]]:
        raise ConfigError("a generation run cannot be exported to ONNX (it generates token by token); predict with "
                          "--engine torch")

    def predict_outputs(self, forward: Any, backbone: Backbone, task: Task, samples: Samples, *,
                        batch_size: int = 32) -> np.ndarray:
        assert isinstance(task, Generation)
        return task.completions(backbone, samples, batch_size=batch_size)


@contextmanager
def untuned(model: TransferModel) -> Iterator[TransferModel]:
    """``model`` as it was before tuning: its LoRA adapters switched off for the duration, or (after full
    fine-tuning) a fresh backbone built from the same spec."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from transferkit.backbones.base import create_backbone
    from transferkit.heads import TransferModel

    adapters = [m for m in model.backbone.modules() if isinstance(m, BaseTunerLayer)]
    if adapters:
        trainable = {id(p): p.requires_grad for p in model.parameters()}  # switching adapters sets requires_grad
        for layer in adapters:
            layer.enable_adapters(False)
        try:
            yield model
        finally:
            for layer in adapters:
                layer.enable_adapters(True)
            for p in model.parameters():
                p.requires_grad_(trainable[id(p)])
        return
    fresh = create_backbone(model.backbone.spec)
    yield TransferModel(fresh, LanguageModelHead(), output="tokens")


def _text(value: Any) -> str:
    """A table cell as text; a missing cell (NaN, None) is empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)
