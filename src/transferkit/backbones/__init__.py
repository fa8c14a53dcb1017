"""Where pretrained models come from: one contract, one registry, one file per source."""

from transferkit.backbones import hf, lenet, local, timm_source, zoo
from transferkit.backbones.base import (
    Backbone,
    BackboneEntry,
    BackboneSpec,
    create_backbone,
    register_backbone,
    registered_backbones,
    resolve_entry,
)

__all__ = ["Backbone", "BackboneEntry", "BackboneSpec", "create_backbone", "hf", "lenet", "local", "register_backbone",
           "registered_backbones", "resolve_entry", "timm_source", "zoo"]
