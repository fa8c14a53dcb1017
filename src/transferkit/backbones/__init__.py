"""Where pretrained models come from: one contract, one registry, one file per source."""

from transferkit.backbones import gguf, hf, lenet, local, timm_source, zoo
from transferkit.backbones.base import (
    BACKBONES,
    OUTPUTS,
    Backbone,
    BackboneEntry,
    BackboneSpec,
    FeatureMaps,
    TokenFeatures,
    create_backbone,
    resolve_entry,
)
from transferkit.backbones.hf import WordTokens

__all__ = ["BACKBONES", "OUTPUTS", "Backbone", "BackboneEntry", "BackboneSpec", "FeatureMaps", "TokenFeatures",
           "WordTokens", "create_backbone", "gguf", "hf", "lenet", "local", "resolve_entry", "timm_source", "zoo"]

