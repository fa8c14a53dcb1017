"""TransferClassifier: scikit-learn's estimator rules, user errors, and save/load round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import support
import transferkit
from transferkit import TransferClassifier
from transferkit.errors import ArtifactError, BackboneError, ConfigError, DataError, NotFittedError

IMAGE_SPEC = {"backbone": "timm:test_efficientnet", "pretrained": False, "backbone_options": {"image_size": 32}}


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str], list[str], list[str]]:
    helpers = support
    return (*helpers.sentiment_texts(12, seed=0), *helpers.sentiment_texts(10, seed=1))


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    helpers = support
    return (*helpers.blob_images(12, seed=0), *helpers.blob_images(6, seed=1))


@pytest.fixture(scope="module")
def probe(tiny_bert_dir: Path, texts: tuple) -> TransferClassifier:
    x, y, _, _ = texts
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="linear_probe", progress=False)
    return clf.fit(x, y)


@pytest.fixture(scope="module")
def finetuned(images: tuple) -> TransferClassifier:
    x, y, _, _ = images
    clf = TransferClassifier(**IMAGE_SPEC, strategy="finetune", epochs=2, batch_size=8, progress=False)
    return clf.fit(x, y)


# -- scikit-learn rules --------------------------------------------------------------------------


def test_constructor_stores_parameters_and_clone_copies_them() -> None:
    options = {"image_size": 48}
    clf = TransferClassifier(
        backbone="timm:test_resnet", strategy="finetune", backbone_options=options, lr=0.01,
        strategy_params={"train_last_k": 2}
    )
    params = clf.get_params()
    assert params["backbone"] == "timm:test_resnet" and params["backbone_options"] is options
    assert params["lr"] == 0.01 and params["strategy_params"] == {"train_last_k": 2}
    copy = clone(clf)  # raises if the constructor changed a parameter
    assert copy is not clf and copy.get_params()["backbone_options"] == options
    assert copy.get_params().keys() == params.keys()


def test_set_params_round_trip() -> None:
    clf = TransferClassifier()
    assert clf.set_params(lr=0.5, epochs=7, strategy="finetune") is clf
    assert clf.get_params()["lr"] == 0.5 and clf.epochs == 7 and clf.strategy == "finetune"
    again = TransferClassifier(**clf.get_params())
    assert again.get_params() == clf.get_params()
    with pytest.raises(ValueError, match="no_such_param"):
        clf.set_params(no_such_param=1)


def test_fit_returns_self_and_score_is_accuracy(tiny_bert_dir: Path, texts: tuple) -> None:
    x, y, x_test, y_test = texts
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False)
    assert clf.fit(x, y) is clf
    assert list(clf.classes_) == ["neg", "pos"] and clf.modality_ == "text"
    score = clf.score(x_test, y_test)
    assert score == pytest.approx(np.mean(clf.predict(x_test) == np.array(y_test)))
    assert score > 0.5
    probabilities = clf.predict_proba(x_test)
    assert probabilities.shape == (len(x_test), 2)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_clone_of_a_fitted_estimator_is_unfitted(probe: TransferClassifier) -> None:
    copy = clone(probe)
    assert not hasattr(copy, "model_") and copy.get_params() == probe.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(["good film"])


def test_predict_before_fit_raises_not_fitted() -> None:
    clf = TransferClassifier()
    calls = (
        lambda: clf.predict(["a"]),
        lambda: clf.predict_proba(["a"]),
        lambda: clf.score(["a"], ["b"]),
        lambda: clf.evaluate(["a"], ["b"]),
        lambda: clf.save("never"),
    )
    for call in calls:
        with pytest.raises(NotFittedError, match="not fitted"):
            call()
    assert not Path("never").exists()


# -- errors a user can cause ---------------------------------------------------------------------


def test_one_class_is_a_data_error() -> None:
    with pytest.raises(DataError, match="only one class 'pos'"):
        TransferClassifier().fit(["good", "great", "fine"], ["pos", "pos", "pos"])


def test_text_data_for_an_image_backbone_is_a_clear_data_error(texts: tuple) -> None:
    x, y, _, _ = texts
    with pytest.raises(DataError, match="takes image but the data is text; choose a text backbone"):
        TransferClassifier(**IMAGE_SPEC, progress=False).fit(x, y)


def test_unknown_strategy_is_a_config_error(texts: tuple) -> None:
    x, y, _, _ = texts
    with pytest.raises(ConfigError, match="unknown strategy 'no_such_strategy'.*linear_probe"):
        TransferClassifier(strategy="no_such_strategy").fit(x, y)


def test_unknown_backbone_is_a_backbone_error_naming_it(texts: tuple) -> None:
    x, y, _, _ = texts
    with pytest.raises(BackboneError, match="unknown backbone 'no_such_backbone'"):
        TransferClassifier(backbone="no_such_backbone").fit(x, y)


# -- save and load -------------------------------------------------------------------------------


def test_linear_probe_round_trip(probe: TransferClassifier, texts: tuple, tmp_path: Path) -> None:
    _, _, x_test, _ = texts
    run = probe.save(tmp_path / "run")
    assert (run / "head.safetensors").is_file() and (run / "transferkit.json").is_file()
    assert not (run / "backbone.safetensors").exists()
    manifest = json.loads((run / "transferkit.json").read_text())
    assert manifest["classes"] == ["neg", "pos"] and manifest["backbone_trained"] is False
    loaded = transferkit.load(run)
    assert list(loaded.classes_) == list(probe.classes_) and loaded.get_params() == probe.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(x_test), probe.predict_proba(x_test))


def test_a_run_written_before_per_method_configs_still_loads(probe: TransferClassifier, texts: tuple,
                                                              tmp_path: Path) -> None:
    _, _, x_test, _ = texts
    run = probe.save(tmp_path / "run")
    manifest = json.loads((run / "transferkit.json").read_text())
    params = manifest["estimator_params"]
    params.pop("strategy_params"), params.pop("regularizer_params")
    # the estimator arguments of the previous release, one per strategy and regulariser setting
    params.update(probe_c=0.5, train_last_k=None, l2sp_alpha=0.01, bss_eta=0.001, unfreeze_every=1,
                  contrastive_loss="supcon", contrastive_ce=True)
    (run / "transferkit.json").write_text(json.dumps(manifest))
    loaded = transferkit.load(run)
    assert loaded.strategy_params == {"c": 0.5} and loaded.regularizer_params is None
    np.testing.assert_array_equal(loaded.predict_proba(x_test), probe.predict_proba(x_test))


def test_finetune_round_trip(finetuned: TransferClassifier, images: tuple, tmp_path: Path) -> None:
    _, _, x_test, _ = images
    run = finetuned.save(tmp_path / "run")
    assert (run / "backbone.safetensors").is_file() and (run / "head.safetensors").is_file()
    assert json.loads((run / "history.json").read_text()) == finetuned.history_
    loaded = transferkit.load(run)
    assert loaded.backbone_trained_ is True
    np.testing.assert_array_equal(loaded.predict_proba(x_test), finetuned.predict_proba(x_test))
    assert list(loaded.predict(x_test)) == list(finetuned.predict(x_test))


def test_saving_onto_an_existing_directory_needs_overwrite(probe: TransferClassifier, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="already exists"):
        probe.save(out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ArtifactError, match="not a transferkit run directory"):  # a user's folder is never replaced
        probe.save(out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    run = probe.save(tmp_path / "run2")
    probe.save(run, overwrite=True)  # a run directory is
    assert transferkit.load(run).classes_.tolist() == ["neg", "pos"]


def failing_write_json(path: Path, data: object) -> None:
    raise OSError(f"disk full while writing {path.name}")


def test_a_failed_save_leaves_nothing_behind(
    probe: TransferClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("transferkit.artifact.write_json", failing_write_json)
    with pytest.raises(OSError, match="disk full"):
        probe.save(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_run(
    probe: TransferClassifier, texts: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, x_test, _ = texts
    run = probe.save(tmp_path / "run")
    monkeypatch.setattr("transferkit.artifact.write_json", failing_write_json)
    with pytest.raises(OSError, match="disk full"):
        probe.save(run, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    monkeypatch.undo()
    np.testing.assert_array_equal(transferkit.load(run).predict_proba(x_test), probe.predict_proba(x_test))


# -- audio ---------------------------------------------------------------------------------------


def test_audio_tones_with_a_random_whisper_tiny_en() -> None:
    helpers = support
    waves, labels = helpers.tone_waves(10, seed=0)
    test_waves, test_labels = helpers.tone_waves(6, seed=1)
    clf = TransferClassifier(backbone="whisper_tiny_en", pretrained=False, progress=False).fit(waves, labels)
    assert clf.modality_ == "audio" and clf.model_.backbone.num_features == 384
    assert clf.score(test_waves, test_labels) >= 0.9
    with pytest.raises(DataError, match="not a path to an image or audio file"):
        clf.predict(["a text"])
