"""The label-efficiency curve: subsets per fraction, both recipes, one fixed evaluation set, the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import support
from support import assert_user_error, invoke, write_csv
from transferkit.curve import check_fractions, parse_fractions
from transferkit.errors import ConfigError


def test_fractions_are_checked_and_sorted() -> None:
    assert check_fractions(parse_fractions("1, 0.05,0.2,0.05")) == [0.05, 0.2, 1.0]
    for bad in ("0", "1.5", "-0.1", "nan", ""):
        with pytest.raises(ConfigError, match="fractions"):
            check_fractions(parse_fractions(bad))
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_fractions("0.1,x")


def test_curve_fits_both_recipes_per_fraction_and_writes_the_plot(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", *support.sentiment_texts(20, seed=0))
    out = tmp_path / "curve"
    result = invoke("curve", data, "--backbone", f"hf:{tiny_bert_dir}", "--fractions", "0.25,1", "--scratch-epochs",
                    "1", "--out", out, "--no-track")
    assert result.exit_code == 0, result.output
    curve = json.loads((out / "curve.json").read_text())
    assert curve["metric"] == "accuracy" and curve["n_train"] == 32 and curve["n_eval"] == 8  # 20 % held out
    points = [(p["recipe"], p["n_labels"]) for p in curve["points"]]
    assert points == [("transfer (linear_probe)", 8), ("from scratch (finetune)", 8),
                      ("transfer (linear_probe)", 32), ("from scratch (finetune)", 32)]
    assert all(0 <= p["score"] <= 1 for p in curve["points"])
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "data-plot='curve.png'" in page and "data:image/png;base64," in page
    assert_user_error(invoke("curve", data, "--out", out, "--fractions", "0.5"), "exists")
