"""transferkit.safety: only transferkit artefacts are deleted or replaced, never the input data; every write is
atomic; a full disk keeps the previous run and checkpoint; killed writers' staging folders are cleaned."""

from __future__ import annotations

import ast
import errno
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import support
from support import assert_user_error, invoke, write_csv
from transferkit import safety
from transferkit.checkpoint import Checkpoints, LoopState, read_progress
from transferkit.errors import ArtifactError, ConfigError

PACKAGE = Path(safety.__file__).parent


# -- the package routes every delete, replace and write through transferkit.safety ----------------------
# methods of paths, os and shutil that delete, move or write in place
_PATH_METHODS = {"rmtree", "unlink", "rmdir", "removedirs", "rename", "extractall", "write_text", "write_bytes"}
_FUNCTIONS = {"os.replace", "os.unlink", "os.remove", "os.rename", "shutil.move", "shutil.copy", "shutil.copyfile",
              "shutil.copytree"}
# serialisers: each must write the temporary file of an ``atomic_write``
_SERIALISERS = {"save_file", "save_model", "savefig", "torch.save", "save_pretrained", "np.save"}


def _calls(tree: ast.AST) -> list[tuple[ast.Call, list[ast.AST]]]:
    """Every call with its ancestors."""
    found: list[tuple[ast.Call, list[ast.AST]]] = []

    def walk(node: ast.AST, parents: list[ast.AST]) -> None:
        if isinstance(node, ast.Call):
            found.append((node, parents))
        for child in ast.iter_child_nodes(node):
            walk(child, [*parents, node])

    walk(tree, [])
    return found


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _qualified(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return _name(call)


def _writes_mode(call: ast.Call) -> bool:
    values = [*call.args[1:], *[k.value for k in call.keywords if k.arg == "mode"]]
    if _name(call) == "open" and isinstance(call.func, ast.Attribute):  # Path.open(mode)
        values = [*call.args[:1], *[k.value for k in call.keywords if k.arg == "mode"]]
    return any(isinstance(v, ast.Constant) and isinstance(v.value, str) and bool(set(v.value) & set("wax+"))
               for v in values)


def _stray_calls(path: Path) -> list[str]:
    stray = []
    for call, parents in _calls(ast.parse(path.read_text())):
        name, qualified = _name(call), _qualified(call)
        method = isinstance(call.func, ast.Attribute)
        in_atomic_write = any(isinstance(p, ast.Call) and _name(p) == "atomic_write" for p in parents)
        if (
            (method and name in _PATH_METHODS)
            or qualified in _FUNCTIONS
            or (method and name == "replace" and len(call.args) == 1 and not call.keywords)  # Path.replace(target)
            or (name == "open" and _writes_mode(call))
            or ((name in _SERIALISERS or qualified in _SERIALISERS) and not in_atomic_write)
        ):
            stray.append(f"{path.relative_to(PACKAGE)}:{call.lineno} {qualified}")
    return stray


def test_no_delete_replace_or_write_outside_the_safety_module() -> None:
    stray = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.name != "safety.py"
             for hit in _stray_calls(path)]
    assert stray == [], "route these through transferkit.safety: " + ", ".join(stray)


def test_the_grep_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = PACKAGE / "_stray_sample_for_test.py"
    sample.write_text("import shutil, os, torch\nshutil.rmtree(p)\nos.remove(p)\np.replace(q)\n'a'.replace('b', 'c')\n"
                      "torch.save(x, p)\natomic_write(p, lambda tmp: torch.save(x, tmp))\nopen(p, 'w')\nopen(p)\n")
    try:
        found = _stray_calls(sample)
    finally:
        sample.unlink()
    assert [hit.split()[1] for hit in found] == ["shutil.rmtree", "os.remove", "p.replace", "torch.save", "open"]


# -- --overwrite replaces only a transferkit run directory -----------------------------------------------
@pytest.fixture
def text_data(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "data.csv", *support.sentiment_texts(6))


def test_overwrite_refuses_a_folder_that_is_not_a_run(text_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    result = invoke("fit", text_data, "--out", folder, "--overwrite")
    assert_user_error(result, str(folder), "not a transferkit run directory")
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_the_data_folder_and_a_folder_that_contains_it(tmp_path: Path) -> None:
    images = tmp_path / "imgs" / "selfout"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        (images / label / "x.png").write_bytes(b"not really a png")
    # even when the folder looks like a run directory, it holds the data
    (images / "transferkit.json").write_text('{"format_version": 1}')
    for out in (images, tmp_path / "imgs"):
        result = invoke("fit", images, "--out", out, "--overwrite")
        assert_user_error(result, "input data")
        assert (images / "a" / "x.png").read_bytes() == b"not really a png"
    with pytest.raises(ArtifactError, match="input data"):
        safety.remove_artifact(tmp_path / "imgs")


def test_overwrite_refuses_a_regular_file_and_leaves_no_copy(text_data: Path, tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = invoke("fit", text_data, "--out", target, "--overwrite")
    assert_user_error(result, "is a file")
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "notes.txt"]


def test_a_run_directory_is_replaced_with_overwrite(text_data: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    for _ in range(2):
        result = invoke("fit", text_data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run, "--overwrite")
        assert result.exit_code == 0, result.output
    assert safety.artifact_kind(run) == safety.RUN_DIRECTORY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run"]  # no .run.old-* or .run.partial-*


def test_remove_artifact_refuses_what_transferkit_did_not_write(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "f.txt").write_text("x")
    with pytest.raises(ArtifactError, match="not a transferkit"):
        safety.remove_artifact(user)
    with pytest.raises(ArtifactError, match="not in a transferkit artefact folder"):
        safety.remove_artifact(user / "f.txt")
    link = tmp_path / "link"
    link.symlink_to(user)
    with pytest.raises(ArtifactError, match="symbolic link"):
        safety.check_replaceable(link)
    assert (user / "f.txt").read_text() == "x"
    made = safety.artifact_folder(tmp_path / "ck" / "stage", safety.CHECKPOINT_FOLDER)
    (made / "state-1.pt").write_bytes(b"1")
    safety.remove_artifact(made / "state-1.pt")
    safety.remove_artifact(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_an_existing_folder_of_other_files_is_not_adopted_as_a_checkpoint_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(ArtifactError, match="did not write"):
        Checkpoints(tmp_path).save(LoopState(), {"model": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


# -- atomic writes, and a full disk ---------------------------------------------------------------------
def _disk_full_on_write(monkeypatch: pytest.MonkeyPatch, nth: int) -> list[int]:
    """Make the ``nth`` atomic write of the process write part of its file, then fail with ENOSPC."""
    real = safety.atomic_write
    calls = [0]

    def failing(path, write):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] != nth:
            return real(path, write)

        def partial(tmp: Path) -> None:
            tmp.write_bytes(b"\x00" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, partial)

    monkeypatch.setattr(safety, "atomic_write", failing)
    for module in ("transferkit.artifact", "transferkit.checkpoint"):
        if hasattr(sys.modules[module], "atomic_write"):
            monkeypatch.setattr(f"{module}.atomic_write", failing)
    return calls


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def probe(tiny_bert_dir: Path):  # type: ignore[no-untyped-def]
    from transferkit import TransferClassifier

    texts, labels = support.sentiment_texts(8)
    return TransferClassifier(backbone=f"hf:{tiny_bert_dir}", progress=False).fit(texts, labels)


def test_a_full_disk_at_any_write_of_a_run_save_keeps_the_previous_run(probe, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = probe.save(tmp_path / "run")
    before = _tree(run)
    with monkeypatch.context() as patch:
        counted = _disk_full_on_write(patch, 0)  # count the writes of one save
        probe.save(tmp_path / "counted")
    writes = counted[0]
    safety.remove_artifact(tmp_path / "counted")
    assert writes >= 4  # marker, head, manifest, history
    for nth in range(1, writes + 1):
        with monkeypatch.context() as patch:
            calls = _disk_full_on_write(patch, nth)
            with pytest.raises(ArtifactError, match="disk is full"):
                probe.save(run, overwrite=True)
        assert calls[0] == nth
        assert _tree(run) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder, no temporary file


@pytest.mark.parametrize("nth", [1, 2])
def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_checkpoint(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            nth: int) -> None:
    checkpoints = Checkpoints(tmp_path / "ck")
    checkpoints.save(LoopState(epoch=1, optimizer_steps=3), {"model": {"w": torch.ones(3)}})
    before = _tree(tmp_path / "ck")
    _disk_full_on_write(monkeypatch, nth)  # 1: the tensors, 2: latest.json
    with pytest.raises(ArtifactError, match="disk is full"):
        checkpoints.save(LoopState(epoch=2, optimizer_steps=6), {"model": {"w": torch.zeros(3)}})
    assert _tree(tmp_path / "ck") == before  # no new tensors file without its latest.json, no temporary file
    monkeypatch.undo()
    assert read_progress(tmp_path / "ck")["loop"]["epoch"] == 1  # type: ignore[index]
    state, tensors = Checkpoints(tmp_path / "ck").load()  # type: ignore[misc]
    assert state.epoch == 1 and torch.equal(tensors["model"]["w"], torch.ones(3))
    leftovers = [p.name for p in (tmp_path / "ck").iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = safety.write_text(tmp_path / "a.json", "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        safety.atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_input_data_is_never_overwritten(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("text,label\n")
    safety.protect_input(data)
    with pytest.raises(ArtifactError, match="input data"):
        safety.write_text(data, "gone")
    assert data.read_text() == "text,label\n"


# -- an unwritable --out fails before any work ------------------------------------------------------------
@pytest.mark.parametrize("out", ["/proc/transferkit-run", "/dev/null/run"])
def test_an_unwritable_out_fails_at_once_in_one_line(text_data: Path, out: str) -> None:
    result = invoke("fit", text_data, "--backbone", "no_such_backbone_would_fail_later", "--out", out)
    assert_user_error(result, out)
    assert "no_such_backbone" not in result.stderr  # nothing else was tried


def test_an_unwritable_checkpoint_folder_fails_before_fitting(tmp_path: Path) -> None:
    from transferkit import TransferClassifier

    blocker = tmp_path / "file"
    blocker.write_text("x")
    clf = TransferClassifier(backbone="no_such_backbone", strategy="finetune", checkpoint_dir=blocker / "ck")
    with pytest.raises(ArtifactError, match="checkpoint folder"):
        clf.fit(*support.sentiment_texts(4))


# -- staging folders of a killed process -------------------------------------------------------------------
def _killed_writer(out: Path) -> Path:
    """A staging folder left by a process that died (a real, finished child process)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    staging = out.parent / f".{out.name}.partial-{int(child.stdout)}-abc"
    staging.mkdir()
    safety.mark_artifact(staging, safety.RUN_DIRECTORY)
    (staging / "head.safetensors").write_bytes(b"\x00" * 1000)
    return staging


def test_the_next_start_removes_the_staging_folder_of_a_killed_save(tmp_path: Path) -> None:
    out = tmp_path / "run"
    dead = _killed_writer(out)
    alive = tmp_path / f".run.partial-{os.getppid()}-xyz"  # a live writer (our parent, older than the folder)
    alive.mkdir()
    safety.mark_artifact(alive, safety.RUN_DIRECTORY)
    other = tmp_path / f".other.partial-{int(dead.name.split('-')[1])}-abc"  # another run's staging folder
    other.mkdir()
    safety.mark_artifact(other, safety.RUN_DIRECTORY)
    with safety.staged_directory(out, what=safety.RUN_DIRECTORY) as staging:
        safety.write_text(staging / "x.txt", "new")
    assert not dead.exists() and alive.exists() and other.exists()
    assert (out / "x.txt").read_text() == "new"


def test_a_sigkill_during_the_final_save_leaves_nothing_after_the_next_fit(text_data: Path, tiny_bert_dir: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = (f"import os, signal, transferkit.artifact as a\n"
              f"real = a.atomic_write\n"
              f"def kill(path, write):\n"
              f"    real(path, write)\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n"
              f"a.atomic_write = kill\n"
              f"from transferkit.cli import app\n"
              f"app(['fit', {str(text_data)!r}, '--backbone', 'hf:{tiny_bert_dir}', '--out', {str(out)!r}])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert [p.name.startswith(".run.partial-") for p in tmp_path.iterdir() if p.name.startswith(".")] == [True]
    result = invoke("fit", text_data, "--backbone", f"hf:{tiny_bert_dir}", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run"]


def test_the_next_write_removes_the_temporary_files_of_a_killed_writer(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    dead = int(child.stdout)
    target = tmp_path / "entry.safetensors"
    left = [tmp_path / f".entry.safetensors.tmp-{dead}-123", tmp_path / f"entry.tmp{dead}"]
    live = tmp_path / f".entry.safetensors.tmp-{os.getppid()}-5"
    for path in [*left, live]:
        path.write_bytes(b"half")
    safety.write_bytes(target, b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name])


# -- paths named by the user stay where they belong ---------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/abs/path", "a/b", "..", ""])
def test_file_in_refuses_names_that_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="plain file name"):
        safety.file_in(tmp_path, name)
    assert safety.file_in(tmp_path, "test.json") == tmp_path / "test.json"


def test_evaluate_name_may_not_write_outside_the_run(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = write_csv(tmp_path / "data.csv", *support.sentiment_texts(6))
    run = tmp_path / "run"
    assert invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run).exit_code == 0
    for name in ("../../x", str(tmp_path / "abs"), "../escape"):
        result = invoke("evaluate", run, data, "--name", name)
        assert_user_error(result, "--name", "plain file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run"]
    assert not (run / "evaluations").exists()
    assert invoke("evaluate", run, data, "--name", "ok").exit_code == 0
    assert (run / "evaluations" / "ok.json").is_file()


def test_archive_members_are_extracted_only_inside_their_target(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/config.json", "{}")
        archive.writestr("../x", "escaped")
        archive.writestr("model/../../y", "escaped")
        archive.writestr("/abs", "escaped")
    target = tmp_path / "target"
    target.mkdir()
    archive = zipfile.ZipFile(buffer)
    assert safety.extract_members(archive, target, ["model/config.json"]) == [target / "model" / "config.json"]
    for evil in ("../x", "model/../../y", "/abs"):
        with pytest.raises(ArtifactError, match="outside"):
            safety.extract_members(archive, target, [evil])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert not Path("/abs").exists()
