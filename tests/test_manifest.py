"""transferkit.manifest: a tampered transferkit.json fails in one line naming the field; versions are recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import support
import transferkit
from support import assert_user_error, invoke, write_csv
from transferkit.artifact import MANIFEST, read_manifest
from transferkit.errors import ArtifactError
from transferkit.manifest import MANIFEST_FIELDS, RECORDED_LIBRARIES, RunVersionWarning, library_versions


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("manifest")
    data = write_csv(folder / "data.csv", *support.sentiment_texts(6))
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return folder / "run"


def tampered(run: Path, tmp_path: Path, change: Any) -> Path:
    """A copy of ``run`` whose manifest is ``change(manifest)`` (or ``change`` itself when not callable)."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    edited = change(manifest) if callable(change) else change
    (copy / MANIFEST).write_text(json.dumps(edited))
    return copy


def _set(key: str, value: Any):  # type: ignore[no-untyped-def]
    def change(manifest: dict[str, Any]) -> dict[str, Any]:
        return {**manifest, key: value}

    return change


def _options(**options: Any):  # type: ignore[no-untyped-def]
    def change(manifest: dict[str, Any]) -> dict[str, Any]:
        backbone = {**manifest["backbone"], "options": {**manifest["backbone"]["options"], **options}}
        return {**manifest, "backbone": backbone}

    return change


@pytest.mark.parametrize(("change", "field"), [
    (_set("classes", None), "'classes'"),
    (["not", "an", "object"], "JSON object"),
    (_options(image_size="abc"), "'backbone'"),
    (_options(max_length=-3), "'backbone'"),
    (_set("classes", ["neg", "neg"]), "duplicate"),
    (_set("classes", ["neg", "pos", "other"]), "'classes'"),
    (_set("modality", "image"), "'modality'"),
    (_set("modality", "video"), "'modality'"),
    (_set("backbone_trained", "yes"), "'backbone_trained'"),
    (_set("head_dropout", 2), "'head_dropout'"),
    (lambda m: {k: v for k, v in m.items() if k != "backbone"}, "'backbone' is missing"),
], ids=["classes-null", "list", "image-size-abc", "max-length-negative", "duplicate-classes", "class-count",
        "modality-relabelled", "modality-unknown", "backbone-trained-string", "dropout", "no-backbone"])
def test_a_tampered_manifest_fails_in_one_line_naming_the_field(run: Path, tmp_path: Path, change: Any,
                                                                field: str) -> None:
    copy = tampered(run, tmp_path, change)
    result = invoke("predict", copy, "good film")
    assert_user_error(result, field)
    with pytest.raises(ArtifactError, match=field.strip("'")):
        transferkit.load(copy)


def test_the_manifest_records_the_library_versions(run: Path) -> None:
    versions = read_manifest(run)["versions"]
    assert set(RECORDED_LIBRARIES) <= set(versions)
    assert versions == library_versions() and versions["torch"] and versions["transferkit"]


def test_loading_under_another_major_version_warns(run: Path, tmp_path: Path) -> None:
    def older(manifest: dict[str, Any]) -> dict[str, Any]:
        return {**manifest, "versions": {**manifest["versions"], "torch": "1.13.1", "timm": "0.9.0"}}

    copy = tampered(run, tmp_path, older)
    with pytest.warns(RunVersionWarning, match=r"torch 1\.13\.1 .*timm 0\.9\.0"):
        clf = transferkit.load(copy)
    assert clf.predict(["good film"]).shape == (1,)


def test_the_same_versions_do_not_warn(run: Path, recwarn: pytest.WarningsRecorder) -> None:
    transferkit.load(run)
    assert not [w for w in recwarn if issubclass(w.category, RunVersionWarning)]


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from([entry.name for entry in MANIFEST_FIELDS] + ["format_version"]), value=_JSON)
def test_any_value_of_any_field_is_read_or_refused_in_one_line(run: Path, tmp_path: Path, field: str,
                                                               value: Any) -> None:
    folder = tmp_path  # each example overwrites the one manifest
    manifest = json.loads((run / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, field: value}))
    try:
        read = read_manifest(folder)
    except ArtifactError as exc:
        assert "\n" not in str(exc) and (field in str(exc) or "format version" in str(exc))
    else:
        spec = next((entry for entry in MANIFEST_FIELDS if entry.name == field), None)
        if spec is None:
            assert field == "format_version" and type(read[field]) is int and read[field] == 1
        else:
            assert spec.check(read[field])
