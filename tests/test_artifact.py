"""Run-directory writing: permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from transferkit.artifact import staged_directory


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_staged_directory_follows_the_umask_not_mkdtemps_0700(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        with staged_directory(tmp_path / "run") as staging:
            (staging / "x.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o777 & ~umask
