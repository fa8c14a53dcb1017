"""Every delete, replace and write of transferkit goes through this module, so that a user's files are safe
by construction.

- Only transferkit artefacts are deleted or replaced: a folder transferkit created carries a marker file
  (``.transferkit``, naming its kind: run directory, output directory, checkpoint folder, feature cache),
  and a run directory is also recognised by its manifest. Files are deleted only inside such a folder.
- The input data is never deleted, replaced or overwritten, nor a folder that contains it: readers and
  the CLI register what they read with ``protect_input``.
- Every write is atomic: a temporary file in the same folder, flushed to disk, then renamed over the
  target. A failure (a full disk included) removes the temporary file and leaves the old file whole.
- A directory is written in a hidden staging folder next to it and renamed into place when complete;
  the staging folders of a process that died are removed on the next start.

``tests/test_safety.py`` greps the package for deletes, renames and writes outside this module.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transferkit.errors import ArtifactError, ConfigError

MARKER = ".transferkit"
RUN_MANIFEST = "transferkit.json"  # the run directory's manifest (transferkit.artifact.MANIFEST)
RUN_DIRECTORY = "run directory"
OUTPUT_DIRECTORY = "output directory"
CHECKPOINT_FOLDER = "checkpoint folder"
FEATURE_CACHE = "feature cache"


def cache_dir() -> Path:
    """Where transferkit keeps its caches (features, measured batch sizes): ``$TRANSFERKIT_CACHE``, else
    ``~/.cache/transferkit``."""
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit"))

_PROTECTED: set[Path] = set()
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)(?:-.*)?$")
_LEGACY_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:partial-(?!\d+-)[^.]+|old-\d+)$")


# -- the input data ----------------------------------------------------------------------------------
def protect_input(*paths: str | os.PathLike[str] | None) -> None:
    """Register input data (a file or folder): for the rest of the process it is never deleted, replaced
    or overwritten, nor is any folder that contains it."""
    for path in paths:
        if path is not None:
            _PROTECTED.add(_absolute(Path(path)))


def input_inside(path: str | os.PathLike[str]) -> Path | None:
    """The registered input that ``path`` is or contains, if any."""
    target = _absolute(Path(path))
    for data in _PROTECTED:
        if data == target or target in data.parents:
            return data
    return None


def _inside_input(path: Path) -> Path | None:
    """The registered input folder that ``path`` lies in (or is), if any."""
    target = _absolute(path)
    return next((data for data in _PROTECTED if data == target or data in target.parents), None)


def _absolute(path: Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.path.expanduser(path))))


# -- what is an artefact ------------------------------------------------------------------------------
def artifact_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of transferkit artefact folder ``path`` is (its marker, or a run directory's manifest); None
    for anything else (a user's folder, a regular file, a symbolic link, nothing)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return None
    marker = path / MARKER
    if marker.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            kind = json.loads(marker.read_text()).get("kind")
            if isinstance(kind, str):
                return kind
        return None
    # written before markers existed: a run directory (its manifest), a checkpoint folder (its latest.json)
    for name, keys, kind in ((RUN_MANIFEST, {"format_version"}, RUN_DIRECTORY),
                             ("latest.json", {"format_version", "signature", "tensors"}, CHECKPOINT_FOLDER)):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            if (path / name).is_file() and keys <= set(json.loads((path / name).read_text())):
                return kind
    return None


def mark_artifact(folder: Path, kind: str) -> None:
    """Mark ``folder`` (which transferkit created) as an artefact of ``kind``."""
    write_bytes(folder / MARKER, json.dumps({"kind": kind, "written_by": "transferkit"}).encode())


def artifact_folder(folder: str | os.PathLike[str], kind: str, *, adopt: str | None = None) -> Path:
    """Create ``folder`` (and its missing parents) as a marked artefact folder, or check that an existing one
    can hold artefacts: marked already, or empty (then it is marked).

    Args:
        adopt: a glob; an existing unmarked folder whose entries all match it (what an older transferkit
            wrote there) is marked too.

    Raises:
        ArtifactError: it is a file, holds other things, is input data, or cannot be created.
    """
    folder = Path(folder)
    if input_inside(folder) is not None:
        raise ArtifactError(f"cannot use {folder} as a {kind}: it holds the input data {input_inside(folder)}")
    if folder.is_dir() and not folder.is_symlink():
        if artifact_kind(folder) is None:
            try:
                ours = all(adopt is not None and entry.is_file() and entry.match(adopt) for entry in folder.iterdir())
            except OSError as exc:
                raise ArtifactError(f"cannot use {folder} as a {kind}: {exc.strerror}") from exc
            if not ours:
                raise ArtifactError(f"{folder} holds files transferkit did not write; choose a new or empty "
                                    f"folder for the {kind}")
            mark_artifact(folder, kind)
        return folder
    missing = [folder, *[p for p in folder.parents if not p.exists()]]
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create the {kind} {folder}: {exc.strerror or exc}") from exc
    for created in missing:  # every folder made here holds only this artefact
        mark_artifact(created, kind)
    return folder


# -- delete and replace -------------------------------------------------------------------------------
def check_replaceable(path: str | os.PathLike[str], *, what: str = "output") -> None:
    """Refuse, with one line, to delete or replace ``path`` unless it is a transferkit artefact folder that
    holds no input data.

    Raises:
        ArtifactError: naming the path and the reason.
    """
    path = Path(path)
    data = input_inside(path)
    if data is not None:
        same = _absolute(path) == data
        raise ArtifactError(f"refusing to replace {path}: it {'is' if same else 'contains'} the input data"
                            f"{'' if same else f' {data}'}; choose another {what}")
    if path.is_symlink():
        raise ArtifactError(f"refusing to replace {path}: it is a symbolic link; choose another {what}")
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"refusing to replace {path}: it is a file, not a transferkit {what}; "
                            f"choose another {what}")
    if path.exists() and artifact_kind(path) is None:
        raise ArtifactError(f"refusing to replace {path}: it is not a transferkit {what} (no {MARKER} marker or "
                            f"{RUN_MANIFEST}); remove it yourself or choose another {what}")


def remove_artifact(path: str | os.PathLike[str]) -> None:
    """Delete a transferkit artefact: a marked folder (with all it holds), or a file inside one.

    Raises:
        ArtifactError: ``path`` is not an artefact, or is or holds input data.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        check_replaceable(path, what="artefact")
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise ArtifactError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        return
    if input_inside(path) is not None or _inside_input(path) is not None:
        raise ArtifactError(f"refusing to delete {path}: it is input data")
    if artifact_kind(path.parent) is None:
        raise ArtifactError(f"refusing to delete {path}: it is not in a transferkit artefact folder")
    path.unlink(missing_ok=True)


def clear_artifact_folder(folder: str | os.PathLike[str], patterns: Iterable[str]) -> bool:
    """Delete the files of an artefact folder that match ``patterns`` (globs), then the folder itself when
    nothing else is left in it; a file someone else put there keeps the folder. Returns whether the
    folder is gone.

    Raises:
        ArtifactError: ``folder`` is not an artefact folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return not folder.exists()
    if artifact_kind(folder) is None:
        raise ArtifactError(f"refusing to delete files in {folder}: it is not a transferkit artefact folder")
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path.is_file() and path.name != MARKER:
                remove_artifact(path)
    if {p.name for p in folder.iterdir()} <= {MARKER}:
        remove_artifact(folder)
        return True
    return False


def replace_artifact(staging: Path, out: Path, *, what: str = "output") -> None:
    """Move the complete staging folder ``staging`` to ``out``; an existing ``out`` must be a replaceable
    artefact (``check_replaceable``). A crash in between leaves either the old or the new folder at
    ``out`` and a hidden folder that the next start removes (``clean_stale_staging``)."""
    if artifact_kind(staging) is None:
        raise ArtifactError(f"{staging} is not a complete transferkit staging folder")
    if not (out.exists() or out.is_symlink()):
        staging.replace(out)
        return
    check_replaceable(out, what=what)
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
    trash.rmdir()
    out.replace(trash)
    staging.replace(out)
    remove_artifact(trash)


@contextmanager
def staged_directory(out: str | os.PathLike[str], *, overwrite: bool = False, what: str = OUTPUT_DIRECTORY,
                     kind: str | None = None) -> Iterator[Path]:
    """Write a directory atomically: the block fills a hidden, marked staging folder next to ``out``, which
    replaces ``out`` only when the block succeeds; on any error nothing is left behind.

    Raises:
        ArtifactError: ``out`` exists and ``overwrite`` is false, or ``out`` may not be replaced
            (``check_replaceable``), or cannot be written.
    """
    out = Path(out)
    check_output(out, overwrite=overwrite, what=what)
    clean_stale_staging(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
        staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes 0700; an output folder follows the umask
    except OSError as exc:
        raise ArtifactError(f"cannot write the {what} {out}: {exc.strerror or exc}") from exc
    try:
        mark_artifact(staging, kind or what)
        yield staging
        replace_artifact(staging, out, what=what)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)  # our own staging folder, made above
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(out: str | os.PathLike[str], *, overwrite: bool = False, what: str = OUTPUT_DIRECTORY,
                 inputs: tuple[str | os.PathLike[str] | None, ...] = ()) -> None:
    """Check, before any work, that ``out`` can be written: it does not exist (or ``overwrite`` and it is a
    replaceable artefact), is not input data, and its folder can be created and written.

    Args:
        inputs: input data of the run, registered with ``protect_input`` first.

    Raises:
        ArtifactError: one line naming ``out`` and the reason.
    """
    out = Path(out)
    protect_input(*inputs)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ArtifactError(f"{what} {out} already exists; choose another --out or pass --overwrite")
        check_replaceable(out, what=what)
    check_writable(out.parent, what=what, target=out)


def check_writable(folder: str | os.PathLike[str], *, what: str = "output", target: Path | None = None) -> None:
    """Check that files can be created in ``folder`` (created later if missing) by making and removing
    a probe in its nearest existing ancestor.

    Raises:
        ArtifactError: naming the folder and the reason.
    """
    folder = Path(folder)
    shown = target if target is not None else folder
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise ArtifactError(f"cannot write the {what} {shown}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ArtifactError(f"cannot write the {what} {shown}: {existing} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".transferkit-probe-", dir=existing)
    except OSError as exc:
        raise ArtifactError(f"cannot write the {what} {shown}: {existing}: {exc.strerror or exc}") from exc
    os.rmdir(probe)  # an empty folder made just above


def file_in(folder: str | os.PathLike[str], name: str, *, what: str = "name") -> Path:
    """``folder / name`` for a plain file name; a name with a folder part (``../x``, ``/abs/path``, ``a/b``)
    could write outside ``folder`` and is refused.

    Raises:
        ConfigError: naming the value.
    """
    parts = Path(name).parts
    if (len(parts) != 1 or name in (".", "..") or "/" in name or "\\" in name or name != name.strip()
            or "\0" in name):
        raise ConfigError(f"{what} {name!r} must be a plain file name (no folders, no '..'): it may not point "
                          f"outside {folder}")
    return Path(folder) / name


def extract_members(archive: zipfile.ZipFile, target: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Extract the archive members ``names`` into ``target``, each written atomically; a member whose path
    would land outside ``target`` (``../x``, an absolute path) is refused.

    Raises:
        ArtifactError: naming the member.
    """
    root = _absolute(Path(target))
    written = []
    for name in names:
        destination = _absolute(root / name)
        if name.startswith(("/", "\\")) or Path(name).is_absolute() or root not in destination.parents:
            raise ArtifactError(f"archive member {name!r} would be extracted outside {root}; the archive is unsafe")
        destination.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_bytes(destination, archive.read(name)))
    return [root / path.relative_to(root) for path in written]


# -- atomic writes ------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which is flushed
    to disk and renamed over ``path``. On any failure the temporary file is removed and ``path`` keeps its
    old content.

    Raises:
        ArtifactError: ``path`` is input data or a folder, or the write failed (a full disk, no permission),
            naming the file.
    """
    path = Path(path)
    if _inside_input(path) is not None and path.exists():
        raise ArtifactError(f"refusing to overwrite {path}: it is input data")
    if path.is_dir():
        raise ArtifactError(f"cannot write {path}: it is a folder")
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise ArtifactError(f"cannot write {path}: {reason}") from exc
    except BaseException:
        _discard(tmp)
        raise
    return path


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of ``path`` that writers killed mid-write left (``.NAME.tmp-PID-*``, and an
    older transferkit's ``.NAME.tmpPID`` and ``STEM.tmpPID``); a live writer's file is left alone."""
    import psutil

    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    patterns = (rf"^\.{re.escape(path.name)}\.tmp-?(\d+)(?:-\d+)?$", rf"^{re.escape(path.stem)}\.tmp(\d+)$")
    for candidate in path.parent.iterdir():
        match = next((m for p in patterns if (m := re.match(p, candidate.name))), None)
        if match is None or not candidate.is_file() or int(match.group(1)) == os.getpid():
            continue
        if not psutil.pid_exists(int(match.group(1))):
            _discard(candidate)
            removed.append(candidate)
    return removed


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (``atomic_write``)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON atomically (``atomic_write``)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike[str], header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    """Write a CSV table (a header row, then ``rows``) atomically (``atomic_write``)."""
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, table.getvalue())


# -- staging folders of processes that died -----------------------------------------------------------
def clean_stale_staging(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden staging folders (``.OUT.partial-PID-*``, ``.OUT.old-PID-*``) that a process killed
    while writing ``out`` left behind: those whose process is dead, or younger than the folder (its PID
    was reused). Folders of a live writer are left alone. Returns the folders removed."""
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for candidate in out.parent.glob(f".{glob_escape(out.name)}.*"):
        match = _STAGING.match(candidate.name) or _LEGACY_STAGING.match(candidate.name)
        if match is None or match.group("name") != out.name or artifact_kind(candidate) is None:
            continue
        pid = int(match.group("pid")) if "pid" in match.groupdict() and match.group("pid") else None
        if not _is_stale(candidate, pid):
            continue
        with contextlib.suppress(ArtifactError):
            remove_artifact(candidate)
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _is_stale(folder: Path, pid: int | None) -> bool:
    import psutil

    try:
        made = folder.stat().st_mtime
    except OSError:
        return False
    if pid is None:  # a staging folder of an older transferkit: no process can still be writing it
        return made < psutil.Process().create_time()
    if pid == os.getpid():
        return made < psutil.Process().create_time()
    try:
        return psutil.Process(pid).create_time() > made + 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def open_for_append(path: str | os.PathLike[str]) -> io.TextIOWrapper:
    """``path`` opened to append text rows (a resumable output such as ``predict --out``'s CSV).

    Appending is the one write here that is not atomic, by design: each flushed row survives an interruption,
    and :func:`drop_partial_line` removes a row cut off half-way before the next run appends.
    """
    return open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - the caller closes it


def drop_partial_line(path: str | os.PathLike[str]) -> None:
    """Cut ``path`` back to its last complete line (the part after the last newline was cut off by a kill)."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
