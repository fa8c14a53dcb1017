"""Backbones from a local directory: ``local:PATH`` or just an existing ``PATH``.

The directory is either a transferkit run directory (its backbone, with fine-tuned weights if the
run trained them, is reused as the starting point for a new task) or a transformers model saved
with ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.backbones.base import BACKBONES, OUTPUTS, Backbone, BackboneSpec, directory_stamp
from transferkit.errors import BackboneError


def local_path(name: str) -> Path:
    return Path(name.split(":", 1)[1] if name.startswith("local:") else name)


@BACKBONES.register("local:", outputs=OUTPUTS, modality=None, offline=True,
                    description="a local transferkit run directory or transformers save_pretrained directory")
def local_backbone(spec: BackboneSpec) -> Backbone:
    from transferkit.artifact import MANIFEST, load_model_from_run

    path = local_path(spec.name)
    if not path.is_dir():
        raise BackboneError(f"local backbone directory {path} does not exist")
    if (path / MANIFEST).is_file():
        model, _ = load_model_from_run(path)
        backbone = model.backbone
        for p in backbone.parameters():
            p.requires_grad_(True)
    elif (path / "config.json").is_file():
        from transferkit.backbones.hf import load_hf_backbone

        backbone = load_hf_backbone(str(path), spec)
    else:
        raise BackboneError(f"{path} is neither a transferkit run directory nor a transformers model directory")
    backbone.spec = spec
    backbone.weights_stamp = directory_stamp(path)
    return backbone
