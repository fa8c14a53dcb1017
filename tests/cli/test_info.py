"""`transferkit list` and its shortcuts (`backbones`, `strategies`, `scores`): one listing code for every registry."""

from __future__ import annotations

import pytest

from support import assert_user_error, invoke
from transferkit.registry import registries


def lines_of(*args: str) -> list[str]:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.parametrize(("shortcut", "kind"), [("backbones", "backbone"), ("strategies", "strategy"),
                                                ("scores", "score")])
def test_the_shortcuts_print_what_list_prints(shortcut: str, kind: str) -> None:
    assert lines_of(shortcut) == lines_of("list", kind)


def test_one_kind_is_one_line_per_entry_in_registration_order() -> None:
    lines = lines_of("list", "regularizer")
    assert [line.split()[0] for line in lines] == registries()["regularizer"].names()
    assert lines_of("list", "regularizers") == lines  # the plural and
    assert lines_of("list", "input_transform") == lines_of("list", "input-transform")  # any separator name a kind


def test_all_kinds_are_listed_with_a_heading_each() -> None:
    headings = [line for line in lines_of("list") if not line.startswith(" ")]
    assert headings == [f"{kind.replace(' ', '-')} ({len(registry)}):" for kind, registry in registries().items()]


def test_an_entry_shows_its_facts_between_name_and_description() -> None:
    lines = {line.split()[0]: line for line in lines_of("list", "backbone")}
    assert lines["lenet"].split()[1:4] == ["image", "random", "init"]
    assert lines["timm:"].split()[1:3] == ["image", "needs"]
    assert "pooled,tokens" in lines["minilm"].split() and "pooled,feature_maps" in lines["efficientnet_lite0"].split()
    assert "pooled" in lines["lenet"].split()
    leep = next(line for line in lines_of("list", "score") if line.startswith("leep "))
    assert "needs source head" in leep


def test_an_unknown_kind_names_the_kinds() -> None:
    assert_user_error(invoke("list", "optimiser"), "optimiser", "backbone", "adaptation-method")


def test_fit_help_names_the_registered_regularizers() -> None:
    result = invoke("fit", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert all(name in text for name in registries()["regularizer"].names())
