"""Every numeric option is checked where it is declared (transferkit.params ranges): usage error, nothing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import invoke


@pytest.mark.parametrize("args", [
    ["fit", "DATA", "--out", "OUT", "--batch-size", "0"],
    ["fit", "DATA", "--out", "OUT", "--image-size", "0"],
    ["fit", "DATA", "--out", "OUT", "--epochs", "0"],
    ["fit", "DATA", "--out", "OUT", "--epochs", "-1"],
    ["fit", "DATA", "--out", "OUT", "--lr", "-1"],
    ["fit", "DATA", "--out", "OUT", "--val-fraction", "1.5"],
    ["fit", "DATA", "--out", "OUT", "--max-length", "0"],
    ["fit", "DATA", "--out", "OUT", "--layer-decay", "0"],
    ["fit", "DATA", "--out", "OUT", "--checkpoint-every", "-5"],
    ["predict", "OUT", "some text", "--top-k", "0"],
    ["adapt", "--source", "DATA", "--target", "DATA", "--out", "OUT", "--epochs", "0"],
    ["lr-find", "DATA", "--start-lr", "0"],
    ["cluster", "DATA", "--k", "1"],
    ["rank", "DATA", "--batch-size", "0"],
], ids=lambda args: " ".join(args[:1] + args[-2:]))
def test_an_out_of_range_option_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data.csv"
    data.write_text("text,label\na,x\nb,y\n")
    args = [str(data) if a == "DATA" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert args[-2] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
