"""The run directory's manifest (``transferkit.json``), checked field by field when a run is loaded.

A hand-edited or damaged manifest fails in one line that names the file and the field, rather than in a
traceback later. Each field is a registered ``ManifestField``; a part of transferkit that records a
new field registers its check beside it (``MANIFEST_FIELDS.add``). Unknown fields are kept and not
checked, so that a newer writer's extra fields do not stop an older reader.

The manifest also records the versions of the libraries that made the run; loading it under another
major version of one of them warns (``RunVersionWarning``), since weights and preprocessing may then
behave differently.
"""

from __future__ import annotations

import importlib.metadata
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.errors import ArtifactError
from transferkit.registry import Registry

# the libraries whose versions decide what a run's weights compute
RECORDED_LIBRARIES = ("transferkit", "torch", "transformers", "timm", "peft")


class RunVersionWarning(UserWarning):
    """A run directory is loaded under another major version of a library than it was written with."""


@dataclass(frozen=True)
class ManifestField:
    """One top-level field of the manifest.

    Attributes:
        name: the JSON key.
        description: what the value must be, in words (completes "must be ...").
        check: True when the value is acceptable.
        required: the field must be present.
    """

    name: str
    description: str
    check: Callable[[Any], bool]
    required: bool = False


MANIFEST_FIELDS: Registry[ManifestField] = Registry("manifest field", ManifestField)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) and math.isfinite(value)


def _class_names(value: Any) -> bool:
    return (isinstance(value, list) and len(value) >= 1 and all(isinstance(v, str) and v != "" for v in value)
            and len(set(value)) == len(value))


_POSITIVE_OPTIONS = ("image_size", "max_length", "sample_rate", "max_seconds")


def _backbone(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return False
    if not isinstance(value.get("pretrained", True), bool) or not isinstance(value.get("options", {}), dict):
        return False
    options = value.get("options", {})
    return all(_is_number(options[key]) and options[key] > 0 for key in _POSITIVE_OPTIONS if key in options)


for _field in (
    ManifestField("modality", "one of image, text, audio", lambda v: v in ("image", "text", "audio"), required=True),
    ManifestField("classes", "a list of distinct, non-empty names (strings)", _class_names, required=True),
    ManifestField("backbone", "an object with a name, pretrained (true/false) and options (positive image_size, "
                  "max_length, sample_rate)", _backbone, required=True),
    ManifestField("backbone_trained", "true or false", lambda v: isinstance(v, bool), required=True),
    ManifestField("strategy", "a strategy name (a string)", lambda v: isinstance(v, str) and bool(v)),
    ManifestField("estimator_params", "an object", lambda v: isinstance(v, dict)),
    ManifestField("strategy_info", "an object", lambda v: isinstance(v, dict)),
    ManifestField("head_dropout", "a number from 0 to below 1", lambda v: _is_number(v) and 0 <= v < 1),
    ManifestField("backbone_seed", "an integer or null", lambda v: v is None or _is_int(v)),
    ManifestField("adapter", "an object or null", lambda v: v is None or isinstance(v, dict)),
    ManifestField("task", "an object with a name", lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)),
    ManifestField("fit_seconds", "a number or null", lambda v: v is None or _is_number(v)),
    ManifestField("versions", "an object of library names and version strings",
                  lambda v: isinstance(v, dict) and all(isinstance(x, str | None) for x in v.values())),
):
    MANIFEST_FIELDS.add(_field)


def validate_manifest(manifest: Any, path: str | Path) -> dict[str, Any]:
    """Check every registered field of a parsed manifest; return it unchanged.

    Raises:
        ArtifactError: one line naming ``path`` and the first field that is missing or wrong.
    """
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object, not {type(manifest).__name__}")
    for spec in MANIFEST_FIELDS:
        if spec.name not in manifest:
            if spec.required:
                raise ArtifactError(f"{path}: field {spec.name!r} is missing; it must be {spec.description}")
            continue
        value = manifest[spec.name]
        if not spec.check(value):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            detail = ""
            names = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else []
            if spec.name == "classes" and len(set(names)) < len(names):
                detail = f" (duplicate names: {sorted({v for v in names if names.count(v) > 1})})"
            raise ArtifactError(f"{path}: field {spec.name!r} must be {spec.description}, got {shown}{detail}")
    return manifest


def library_versions() -> dict[str, str | None]:
    """The installed versions of ``RECORDED_LIBRARIES`` (None for one that is not installed)."""
    found: dict[str, str | None] = {}
    for name in RECORDED_LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _major(version: str | None) -> str | None:
    return None if not version else version.split(".")[0]


def warn_on_version_change(manifest: dict[str, Any], run: str | Path) -> list[str]:
    """Warn (``RunVersionWarning``) for every recorded library whose major version differs from the
    installed one; returns the libraries warned about."""
    recorded = manifest.get("versions") or {}
    installed = library_versions()
    changed = [name for name in RECORDED_LIBRARIES
               if recorded.get(name) and installed.get(name) and _major(recorded[name]) != _major(installed[name])]
    if changed:
        shown = ", ".join(f"{name} {recorded[name]} (now {installed[name]})" for name in changed)
        warnings.warn(f"{run} was written with {shown}: another major version, so its predictions may differ",
                      RunVersionWarning, stacklevel=3)
    return changed
