"""One self-describing run directory per fitted model, written atomically, loaded without pickle.

Layout::

    RUN/
      transferkit.json      format version, backbone spec, classes, strategy, config, preprocessing
      head.safetensors      the head
      backbone.safetensors  backbone weights, only when the strategy changed them
      metrics.json          evaluation on the validation split (when there was one)
      history.json          per-epoch training history
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model

from transferkit.backbones.base import Backbone, BackboneSpec, resolve_entry
from transferkit.errors import ArtifactError, TransferkitError
from transferkit.heads import LinearHead, TransferModel

FORMAT_VERSION = 1
MANIFEST = "transferkit.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file in the same folder, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def save_run(out: str | Path, model: TransferModel, manifest: dict[str, Any], *, backbone_trained: bool,
             extra_json: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a run directory; nothing is left half-written if anything fails.

    Raises:
        ArtifactError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ArtifactError(f"run directory {out} already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_model(model.head, str(staging / "head.safetensors"))
        if backbone_trained:
            save_model(model.backbone, str(staging / "backbone.safetensors"))
        full = {"format_version": FORMAT_VERSION, **manifest, "backbone_trained": backbone_trained}
        write_json(staging / MANIFEST, full)
        for name, data in (extra_json or {}).items():
            write_json(staging / name, data)
        if out.exists():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.replace(trash)
            staging.replace(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def read_manifest(run: str | Path) -> dict[str, Any]:
    run = Path(run)
    path = run / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{run} is not a transferkit run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{run} has format version {manifest.get('format_version')}; "
                            f"this transferkit reads version {FORMAT_VERSION}")
    return manifest


def build_backbone_for_restore(spec: BackboneSpec, weights_saved: bool) -> Backbone:
    """Rebuild a backbone; skip loading pretrained weights that the run directory overwrites anyway."""
    entry = resolve_entry(spec.name)
    if not weights_saved:
        return entry.factory(spec)
    blank = BackboneSpec(spec.name, pretrained=False, options=spec.options)
    backbone = entry.factory(blank)
    backbone.spec = spec
    return backbone


def load_model_from_run(run: str | Path) -> tuple[TransferModel, dict[str, Any]]:
    """The fitted model and manifest of a run directory."""
    run = Path(run)
    manifest = read_manifest(run)
    spec = BackboneSpec.from_dict(manifest["backbone"])
    backbone = build_backbone_for_restore(spec, manifest["backbone_trained"])
    head = LinearHead(backbone.num_features, len(manifest["classes"]), dropout=manifest.get("head_dropout", 0.0))
    model = TransferModel(backbone, head)
    try:
        load_model(model.head, str(run / "head.safetensors"))
        if manifest["backbone_trained"]:
            load_model(model.backbone, str(run / "backbone.safetensors"))
    except (OSError, RuntimeError, TransferkitError) as exc:
        raise ArtifactError(f"cannot load weights from {run}: {exc}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, manifest
