"""Where pretrained models come from: one contract, one registry, one file per source."""

from transferkit.backbones import hf, lenet, local, timm_source, zoo
from transferkit.backbones.base import (
    BACKBONES,
    Backbone,
    BackboneEntry,
    BackboneSpec,
    create_backbone,
    resolve_entry,
)

__all__ = ["BACKBONES", "Backbone", "BackboneEntry", "BackboneSpec", "create_backbone", "hf", "lenet", "local",
           "resolve_entry", "timm_source", "zoo"]

