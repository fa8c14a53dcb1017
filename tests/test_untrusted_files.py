"""Untrusted files: the package never unpickles, and malicious pickles dropped into run directories, checkpoint
folders, the feature cache and a local backbone folder, under every name a loader might look at, never run."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import support
import transferkit
from support import invoke, write_csv
from transferkit.artifact import MANIFEST
from transferkit.checkpoint import LATEST, Checkpoints, LoopState, read_progress
from transferkit.errors import ArtifactError, TransferkitError

PACKAGE = Path(transferkit.__file__).parent
_UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def _unsafe_loads(tree: ast.AST) -> list[int]:
    """Lines of torch.load without weights_only=True, np.load with allow_pickle=True, and read_pickle."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        name = node.func.attr
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        if name == "load" and owner == "torch":
            safe = keywords.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                lines.append(node.lineno)
        elif name == "load" and owner in ("np", "numpy"):
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                lines.append(node.lineno)
        elif name == "read_pickle":
            lines.append(node.lineno)
    return lines


def test_the_package_never_imports_an_unpickler_nor_calls_torch_load_unsafely() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        found += [f"{path.relative_to(PACKAGE)}: import {name}" for name in _imports(tree) & _UNPICKLERS]
        found += [f"{path.relative_to(PACKAGE)}:{line} unsafe load" for line in _unsafe_loads(tree)]
    assert found == []


def test_the_grep_sees_an_unsafe_torch_load() -> None:
    tree = ast.parse("import pickle\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
                     "torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=True)\n")
    assert _imports(tree) & _UNPICKLERS == {"pickle"}
    assert _unsafe_loads(tree) == [2, 3, 5]


# -- malicious payloads -------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates ``marker``: proof that the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def payloads(marker: Path) -> dict[str, bytes]:
    """The same attack as a raw pickle and as a torch.save archive."""
    raw = pickle.dumps(Payload(marker))
    folder = marker.parent / "payload_build"
    folder.mkdir(exist_ok=True)
    torch.save({"model": Payload(marker)}, folder / "p.pt")
    archive = (folder / "p.pt").read_bytes()
    shutil.rmtree(folder)
    return {"pickle": raw, "torch": archive}


def test_the_payload_does_run_when_unpickled(tmp_path: Path) -> None:  # the test's own control
    marker = tmp_path / "ran"
    pickle.loads(payloads(marker)["pickle"])
    assert marker.exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("untrusted")
    data = write_csv(folder / "data.csv", *support.sentiment_texts(6))
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", folder / "run")
    assert result.exit_code == 0, result.output
    return data, folder / "run"


# every name a run-directory loader reads, and the names other tools would look for
RUN_NAMES = ["head.safetensors", "backbone.safetensors", "adapter.safetensors", "model.pt", "model.pth", "model.bin",
             "pytorch_model.bin", "model.pkl", "head.pt", "training_args.bin", "optimizer.pt", "history.pkl"]


@pytest.mark.parametrize("kind", ["pickle", "torch"])
@pytest.mark.parametrize("name", RUN_NAMES)
def test_a_malicious_file_in_a_run_directory_never_runs(run: tuple[Path, Path], tmp_path: Path, kind: str,
                                                        name: str) -> None:
    data, original = run
    marker = tmp_path / "ran"
    copy = tmp_path / "run"
    shutil.copytree(original, copy)
    (copy / name).write_bytes(payloads(marker)[kind])
    if name == "backbone.safetensors":  # make the loader read it
        manifest = json.loads((copy / MANIFEST).read_text())
        (copy / MANIFEST).write_text(json.dumps({**manifest, "backbone_trained": True}))
    try:
        clf = transferkit.load(copy)
        clf.progress = False
        clf.predict(["good film"])
    except TransferkitError as exc:
        assert name.endswith(".safetensors"), exc  # only a file the loader reads may make it fail
    for command in (["predict", copy, "good film"], ["evaluate", copy, data]):
        result = invoke(*command)
        assert "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_a_malicious_checkpoint_never_runs_on_resume(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "ck"
    Checkpoints(folder).save(LoopState(epoch=1, optimizer_steps=2), {"model": {"w": torch.ones(2)}})
    tensors = read_progress(folder)["tensors"]  # type: ignore[index]
    for name in (tensors, "state-000000009-0009-000000.pt", "latest.pt", "optimizer.pt"):
        (folder / name).write_bytes(payloads(marker)[kind])
    with pytest.raises(ArtifactError, match="cannot read checkpoint"):
        Checkpoints(folder).load()
    # latest.json naming another file, or replaced by a pickle
    progress = json.loads((folder / LATEST).read_text())
    (folder / LATEST).write_text(json.dumps({**progress, "tensors": "optimizer.pt"}))
    with pytest.raises(ArtifactError):
        Checkpoints(folder).load()
    (folder / LATEST).write_bytes(payloads(marker)["pickle"])
    with pytest.raises(ArtifactError):
        Checkpoints(folder).load()
    assert not marker.exists()


def test_a_malicious_checkpoint_never_runs_through_fit_resume(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transferkit import TransferClassifier

    marker = tmp_path / "ran"
    texts, labels = support.sentiment_texts(6)
    folder = tmp_path / "ck"
    Checkpoints(folder).save(LoopState(epoch=1, optimizer_steps=2), {"model": {}})
    tensors = read_progress(folder)["tensors"]  # type: ignore[index]
    (folder / tensors).write_bytes(payloads(marker)["torch"])
    clf = TransferClassifier(backbone=f"hf:{tiny_bert_dir}", strategy="finetune", epochs=1, progress=False,
                             checkpoint_dir=folder)
    with pytest.raises(TransferkitError):
        clf.fit(texts, labels, resume=True)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_a_malicious_feature_cache_entry_never_runs(tmp_path: Path, tiny_bert_dir: Path, kind: str) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.data import samples_from_arrays
    from transferkit.features import cache_dir, extract_features, features_key

    marker = tmp_path / "ran"
    backbone = create_backbone(f"hf:{tiny_bert_dir}")
    samples = samples_from_arrays(["good film", "bad plot"], None, modality="text")
    fresh = extract_features(backbone, samples, progress=False)
    entry = cache_dir() / "features" / f"{features_key(backbone, samples)}.safetensors"
    assert entry.is_file()
    entry.write_bytes(payloads(marker)[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = extract_features(backbone, samples, progress=False)
    assert (again == fresh).all()
    assert not marker.exists()


def test_a_malicious_weights_file_in_a_local_backbone_folder_never_runs(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transferkit.backbones import create_backbone

    marker = tmp_path / "ran"
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(Exception):  # noqa: B017 - whichever error the library raises, the pickle must not run
        create_backbone(f"hf:{folder}")
    assert not marker.exists()
