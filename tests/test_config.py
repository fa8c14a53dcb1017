"""Method settings from dicts, KEY=VALUE text and TOML: conversion, unknown keys, scopes, the file round trip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from transferkit.config import config_dict, make_config, parse_assignments, read_toml, scoped, write_toml
from transferkit.errors import ConfigError


@dataclass
class Example:
    r: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] | None = None
    ce: bool = True
    k: int | None = 3
    loss: str = "supcon"


def test_text_values_become_the_field_types() -> None:
    made = make_config(Example, {"r": "16", "alpha": "2", "targets": "query,value", "ce": "false", "k": "none"},
                       what="strategy 'x'")
    assert made == Example(r=16, alpha=2.0, targets=("query", "value"), ce=False, k=None)
    assert make_config(Example, {"alpha": 3, "targets": ["q"]}, what="x") == Example(alpha=3.0, targets=("q",))
    assert make_config(Example, None, what="x") == Example()


def test_an_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"strategy 'x' has no setting 'rank'; its settings are r, alpha, "
                                          r"targets, ce, k, loss"):
        make_config(Example, {"rank": 4}, what="strategy 'x'")


@pytest.mark.parametrize(("key", "value", "expected"), [("r", "four", "an integer"), ("r", 1.5, "an integer"),
                                                        ("ce", "maybe", "true or false"), ("alpha", True, "float"),
                                                        ("loss", 3, "text")])
def test_a_value_of_the_wrong_type_is_one_clear_error(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"{key}=.*expected {expected}"):
        make_config(Example, {key: value}, what="strategy 'x'")


def test_assignments_and_scopes() -> None:
    assert parse_assignments(["r=16", " alpha = 32 ", "r=4"]) == {"r": "4", "alpha": "32"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["r16"])
    split = scoped({"r": 1, "strategy.alpha": 2, "l2sp.alpha": 3, "bss": {"eta": 4}}, ["strategy", "l2sp", "bss"],
                   default="strategy")
    assert split == {"strategy": {"r": 1, "alpha": 2}, "l2sp": {"alpha": 3}, "bss": {"eta": 4}}
    with pytest.raises(ConfigError, match="'nope'.*strategy, l2sp"):
        scoped({"nope.x": 1}, ["strategy", "l2sp"], default="strategy")


def test_toml_round_trip_keeps_every_value(tmp_path: Path) -> None:
    settings = Example(r=4, targets=("q", "v"), ce=False, k=None)
    path = write_toml(tmp_path / "run.toml", {"epochs": 3, "lr": 1e-3, "name": 'a "quoted" one',
                                               "param": {"strategy": config_dict(settings)}})
    read = read_toml(path)
    assert read["epochs"] == 3 and read["lr"] == 1e-3 and read["name"] == 'a "quoted" one'
    assert make_config(Example, read["param"]["strategy"], what="x") == settings


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_toml(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        read_toml(tmp_path / "bad.toml")
