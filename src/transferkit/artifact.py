"""One self-describing run directory per fitted model, written atomically, loaded without pickle.

Layout::

    RUN/
      transferkit.json      format version, backbone spec, task and its target encoding, classes, strategy,
                            config, preprocessing
      head.safetensors      the head
      backbone.safetensors  backbone weights, only when the strategy changed them
      adapter.safetensors   instead of backbone.safetensors when the change is a PEFT LoRA adapter: only
                            the adapter's weights; the base is rebuilt from the spec (and checked)
      metrics.json          evaluation on the validation split (null, with the reason, when there was none)
      history.json          per-epoch training history
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from transferkit.backbones.base import Backbone, BackboneSpec, resolve_entry
from transferkit.errors import ArtifactError, TransferkitError
from transferkit.heads import TransferModel
from transferkit.manifest import library_versions, validate_manifest, warn_on_version_change
from transferkit.safety import RUN_DIRECTORY, atomic_write, staged_directory, write_json
from transferkit.tasks import task_from_manifest

FORMAT_VERSION = 1
MANIFEST = "transferkit.json"
ADAPTER = "adapter.safetensors"
# PEFT's bookkeeping fields, which do not change what the adapter computes.
_PEFT_BOOKKEEPING = ("peft_version", "peft_type", "task_type", "base_model_name_or_path", "revision",
                     "inference_mode", "auto_mapping", "runtime_config")


def save_run(out: str | Path, model: TransferModel, manifest: dict[str, Any], *, backbone_trained: bool,
             adapter_only: bool = False, extra_json: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a run directory; nothing is left half-written if anything fails.

    Args:
        backbone_trained: the backbone's features changed; its weights are stored.
        adapter_only: the change is a PEFT LoRA adapter on otherwise untouched weights (the ``lora``
            strategy): store only the adapter, its config and a digest of the base weights.

    Raises:
        ArtifactError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    with staged_directory(out, overwrite=overwrite, what=RUN_DIRECTORY) as staging:
        atomic_write(staging / "head.safetensors", lambda tmp: save_model(model.head, str(tmp)))
        # what the model itself says (its spec, its description) is recorded here, not by each caller
        full = {"format_version": FORMAT_VERSION, **manifest, "backbone": model.backbone.spec.to_dict(),
                "backbone_info": model.backbone.describe(), "backbone_trained": backbone_trained,
                "versions": library_versions()}
        if adapter_only:
            full["adapter"] = save_adapter(model.backbone, staging / ADAPTER)
        elif backbone_trained:
            atomic_write(staging / "backbone.safetensors", lambda tmp: save_model(model.backbone, str(tmp)))
        write_json(staging / MANIFEST, full)
        for name, data in (extra_json or {}).items():
            write_json(staging / name, data)
    return out


def read_manifest(run: str | Path) -> dict[str, Any]:
    run = Path(run)
    path = run / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{run} is not a transferkit run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else FORMAT_VERSION
    if type(version) is not int or version != FORMAT_VERSION:
        raise ArtifactError(f"{run} has format version {manifest.get('format_version')!r}; "
                            f"this transferkit reads version {FORMAT_VERSION}")
    return validate_manifest(manifest, path)


def build_backbone_for_restore(spec: BackboneSpec, weights_saved: bool, seed: int | None = None) -> Backbone:
    """Rebuild a backbone; skip loading pretrained weights that the run directory overwrites anyway.

    Args:
        seed: the torch seed the backbone was first built under; it rebuilds the same random
            weights of a ``pretrained=False`` backbone whose weights the run does not store.
    """
    entry = resolve_entry(spec.name)
    if not weights_saved:
        if spec.pretrained or seed is None:
            return entry.factory(spec)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(seed)
            return entry.factory(spec)
    blank = BackboneSpec(spec.name, pretrained=False, options=spec.options)
    backbone = entry.factory(blank)
    backbone.spec = spec
    return backbone


def load_model_from_run(run: str | Path) -> tuple[TransferModel, dict[str, Any]]:
    """The fitted model and manifest of a run directory (runs without a task are classification).

    Raises:
        ArtifactError: missing or corrupt files, or an adapter whose base weights are not the ones
            it was trained on.
    """
    run = Path(run)
    manifest = read_manifest(run)
    spec = BackboneSpec.from_dict(manifest["backbone"])
    adapter = manifest.get("adapter")
    weights_saved = bool(manifest["backbone_trained"]) and adapter is None
    warn_on_version_change(manifest, run)
    backbone = build_backbone_for_restore(spec, weights_saved, manifest.get("backbone_seed"))
    if backbone.modality != manifest["modality"]:
        raise ArtifactError(f"{run / MANIFEST}: field 'modality' is {manifest['modality']!r}, but its backbone "
                            f"{spec.name!r} takes {backbone.modality} inputs")
    try:
        task = task_from_manifest(manifest)
        head = task.head_for(backbone, dropout=manifest.get("head_dropout", 0.0))
    except (TransferkitError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ArtifactError(f"{run / MANIFEST}: field 'task' does not describe a head: {exc}") from exc
    if list(task.names) != list(manifest["classes"]):
        raise ArtifactError(f"{run / MANIFEST}: field 'classes' {manifest['classes']} disagrees with the task's "
                            f"{list(task.names)}; the manifest was changed")
    model = TransferModel(backbone, head, output=task.output)
    _check_head_shapes(run, model.head, manifest)
    try:
        load_model(model.head, str(run / "head.safetensors"))
        if adapter is not None:
            load_adapter(model.backbone, adapter, run / ADAPTER)
        elif weights_saved:
            load_model(model.backbone, str(run / "backbone.safetensors"))
    except (OSError, RuntimeError, SafetensorError, TransferkitError) as exc:
        raise ArtifactError(f"cannot load weights from {run}: {exc}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, manifest


def _check_head_shapes(run: Path, head: nn.Module, manifest: dict[str, Any]) -> None:
    """Refuse, in one line, a head file whose tensors do not fit the head the manifest describes (a class
    list edited by hand, a head from another run)."""
    path = run / "head.safetensors"
    try:
        with safe_open(str(path), framework="pt") as stored:
            shapes = {key: tuple(stored.get_slice(key).get_shape()) for key in stored.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
    for key, tensor in head.state_dict().items():
        if key in shapes and shapes[key] != tuple(tensor.shape):
            raise ArtifactError(f"{path} holds {key} of shape {list(shapes[key])}, but the manifest's field "
                                f"'classes' ({len(manifest['classes'])} names) and task need "
                                f"{list(tensor.shape)}; the manifest or the head was changed")


# -- PEFT adapters -----------------------------------------------------------------------------
def base_weights_sha256(backbone: nn.Module) -> str:
    """A digest of the backbone's own weights and buffers, with or without an injected adapter.

    Names are taken as before injection (PEFT's ``.base_layer`` dropped, adapter tensors skipped),
    so the digest of a freshly built backbone equals that of the same backbone after LoRA training.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapter_parts = {name for module in backbone.modules() if isinstance(module, BaseTunerLayer)
                     for name in module.adapter_layer_names}
    base: dict[str, torch.Tensor] = {}
    for key, tensor in backbone.state_dict().items():
        parts = key.split(".")
        if not adapter_parts.intersection(parts):
            base[".".join(p for p in parts if p != "base_layer")] = tensor
    digest = hashlib.sha256()
    for key in sorted(base):
        tensor = base[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(backbone: nn.Module, path: Path) -> dict[str, Any]:
    """Write the LoRA adapter that PEFT injected into ``backbone``; return its manifest entry."""
    import peft
    from peft import LoraConfig, get_peft_model_state_dict

    config = getattr(backbone, "peft_config", {}).get("default")
    if not isinstance(config, LoraConfig):
        raise ArtifactError("the strategy reported a LoRA adapter but the backbone carries none")
    defaults = LoraConfig().to_dict()
    fields = {key: value for key, value in config.to_dict().items()
              if key not in _PEFT_BOOKKEEPING and (value != defaults.get(key) or key in ("r", "lora_alpha"))}
    fields = json.loads(json.dumps(fields, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in get_peft_model_state_dict(backbone).items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    return {"method": "lora", "peft_config": fields, "peft_version": peft.__version__,
            "base_sha256": base_weights_sha256(backbone)}


def load_adapter(backbone: nn.Module, adapter: dict[str, Any], path: Path) -> None:
    """Re-inject the LoRA adapter described by a manifest entry into the rebuilt ``backbone`` and
    load its weights.

    Raises:
        ArtifactError: an unknown adapter method, base weights other than those the adapter was
            trained on, or adapter weights that do not fit.
    """
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict

    if adapter.get("method") != "lora":
        raise ArtifactError(f"unknown adapter method {adapter.get('method')!r}")
    if base_weights_sha256(backbone) != adapter.get("base_sha256"):
        raise ArtifactError("the backbone rebuilt from its spec has other weights than the ones "
                            "its adapter was trained on (changed pretrained weights, or another torch/timm "
                            "version for a randomly initialised one)")
    try:
        config = LoraConfig(**adapter["peft_config"])
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"unusable adapter config: {exc}") from exc
    with torch.random.fork_rng(devices=[]):  # the adapter's random init is overwritten below
        inject_adapter_in_model(config, backbone)
    state = load_file(str(path))
    expected = set(get_peft_model_state_dict(backbone))
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ArtifactError(f"{path} does not fit the backbone: missing {missing[:3]}, unexpected {unexpected[:3]}")
    set_peft_model_state_dict(backbone, state)
