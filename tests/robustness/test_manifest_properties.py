"""Property-based tests of the run-directory loader: any JSON value in any field of a run's
``transferkit.json`` loads into a model that predicts, or is refused with an ArtifactError that
names the field; never another exception."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import support
from support import invoke, write_csv
from transferkit.errors import ArtifactError

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=12), st.sampled_from(["text", "image", "classification", "regression",
                                                                "multilabel", "pos", "neg", "linear_probe"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=10)


PARAMETER_NAMES = sorted(__import__("transferkit").TransferEstimator().get_params())
# an object of the estimator's own parameter names (and others) with any values
ESTIMATOR_PARAMS = st.dictionaries(st.one_of(st.sampled_from(PARAMETER_NAMES), st.text(max_size=6)), JSON_VALUES,
                                   max_size=4)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("manifest_run")
    data = write_csv(folder / "data.csv", *support.sentiment_texts(6))
    run = folder / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run)
    assert result.exit_code == 0, result.output
    return run


def fields_of(run: Path) -> list[str]:
    return sorted(json.loads((run / "transferkit.json").read_text()))


def load_or_refuse(run: Path, field: str) -> bool:
    """Whether the run was refused (with an ArtifactError naming ``field``); a run that loads must predict."""
    from transferkit import load

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load(run)
    except ArtifactError as exc:
        # the field by its key, or in words ("format version")
        assert field in str(exc) or field.replace("_", " ") in str(exc), (field, str(exc))
        assert "\n" not in str(exc).strip(), str(exc)
        return True
    predictions = model.predict(["good film", "awful plot"])
    assert len(predictions) == 2
    return False


def tampered_copy(run: Path, folder: Path, change: dict[str, object], drop: str | None = None) -> Path:
    copy = folder / "run"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "transferkit.json").read_text())
    manifest.update(change)
    if drop is not None:
        manifest.pop(drop, None)
    (copy / "transferkit.json").write_text(json.dumps(manifest))
    return copy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_in_any_manifest_field_loads_or_names_the_field(text_run: Path, data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(fields_of(text_run)), label="field")
    value = data.draw(ESTIMATOR_PARAMS if field == "estimator_params" else JSON_VALUES, label="value")
    with tempfile.TemporaryDirectory() as folder:
        if field == "estimator_params":  # the recorded parameters, some of them replaced
            original = json.loads((text_run / "transferkit.json").read_text())[field]
            value = {**original, **value}
        load_or_refuse(tampered_copy(text_run, Path(folder), {field: value}), field)


def test_a_missing_field_loads_or_is_named(text_run: Path, tmp_path: Path) -> None:
    """Runs written before a field existed load (a run without ``task`` is a classifier); a field
    nothing can stand in for is named."""
    refused = []
    for field in fields_of(text_run):
        folder = tmp_path / field
        folder.mkdir()
        if load_or_refuse(tampered_copy(text_run, folder, {}, drop=field), field):
            refused.append(field)
    assert {"format_version", "modality", "classes", "backbone"} <= set(refused)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(change=ESTIMATOR_PARAMS)
def test_any_recorded_estimator_parameters_load_or_name_the_field(text_run: Path, change: dict[str, object]) -> None:
    original = json.loads((text_run / "transferkit.json").read_text())["estimator_params"]
    with tempfile.TemporaryDirectory() as folder:
        load_or_refuse(tampered_copy(text_run, Path(folder), {"estimator_params": {**original, **change}}),
                       "estimator_params")
