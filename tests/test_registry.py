"""The generic Registry's verbs, then a contract over every registry and every registered entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from support import invoke
from transferkit import registry as registry_module
from transferkit.errors import BackboneError, ConfigError
from transferkit.registry import Registry, registries


@dataclass(frozen=True)
class ToyEntry:
    name: str
    target: Any
    description: str
    weight: float = 1.0


@pytest.fixture(autouse=True)
def package_registries_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy registries of a test are forgotten afterwards (the CLI lists every registry it knows)."""
    monkeypatch.setattr(registry_module, "_ALL", registries())


@pytest.fixture
def toys() -> Registry[ToyEntry]:
    return Registry("toy test kind", ToyEntry, hint="see `toys --list`")


def test_register_get_names_describe_in_registration_order(toys: Registry[ToyEntry]) -> None:
    @toys.register("zeta", description="the last letter", weight=2.0)
    def zeta() -> str:
        return "z"

    alpha = toys.add(ToyEntry("alpha", None, "the first letter"))

    assert zeta() == "z"  # the decorator hands back what it decorated
    assert toys.get("zeta") == ToyEntry("zeta", zeta, "the last letter", 2.0)
    assert toys.get("alpha") is alpha
    assert toys.names() == ["zeta", "alpha"]
    assert toys.entries() == [toys.get("zeta"), alpha] == list(toys)
    assert toys.describe() == [("zeta", "the last letter"), ("alpha", "the first letter")]
    assert "zeta" in toys and "omega" not in toys and len(toys) == 2


def test_a_duplicate_name_raises_and_keeps_the_first(toys: Registry[ToyEntry]) -> None:
    toys.register("one", description="first")(object())
    with pytest.raises(ValueError, match="toy test kind 'one' is already registered"):
        toys.register("one", description="second")(object())
    assert toys.get("one").description == "first"


def test_an_entry_needs_a_description(toys: Registry[ToyEntry]) -> None:
    with pytest.raises(ValueError, match="needs a one-line description"):
        toys.register("mute", description="  ")(object())
    assert "mute" not in toys


def test_an_unknown_name_is_one_error_listing_the_names(toys: Registry[ToyEntry]) -> None:
    for name in ("red", "green"):
        toys.register(name, description=name)(object())
    with pytest.raises(ConfigError) as caught:
        toys.get("blue")
    assert str(caught.value) == "unknown toy test kind 'blue'; choose one of red, green (see `toys --list`)"


def test_the_error_class_is_the_registrys(toys: Registry[ToyEntry]) -> None:
    strict = Registry("strict test kind", ToyEntry, error=BackboneError)
    with pytest.raises(BackboneError, match="unknown strict test kind 'x'; choose one of $"):
        strict.get("x")
    assert isinstance(strict.unknown("y"), BackboneError)


def test_remove_takes_an_entry_out(toys: Registry[ToyEntry]) -> None:
    toys.register("temporary", description="gone soon")(object())
    assert toys.remove("temporary").name == "temporary"
    assert "temporary" not in toys
    with pytest.raises(ConfigError, match="unknown toy test kind 'temporary'"):
        toys.remove("temporary")


# -- the contract over every registry of the package ---------------------------------------------------------

BUILT_IN_KINDS = {"backbone", "strategy", "regularizer", "adaptation method", "input transform", "score"}
ENTRIES = [(kind, entry.name) for kind, registry in registries().items() for entry in registry]


def test_every_kind_has_its_registry_filled() -> None:
    found = registries()
    assert set(found) >= BUILT_IN_KINDS
    for kind in BUILT_IN_KINDS:
        assert len(found[kind]) >= 3, kind


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{kind}:{name}" for kind, name in ENTRIES])
def test_every_entry_is_described_and_found_by_its_name(kind: str, name: str) -> None:
    registry = registries()[kind]
    entry = registry.get(name)
    assert entry.name == name
    assert entry.description.strip() and "\n" not in entry.description
    assert (name, entry.description) in registry.describe()
    assert callable(next(value for value in vars(entry).values() if callable(value)))  # what it registers runs


@pytest.fixture(scope="module")
def cli_listing() -> dict[str, dict[str, str]]:
    """``transferkit list`` parsed: kind -> entry name -> its line."""
    result = invoke("list")
    assert result.exit_code == 0, result.output
    listing: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            kind, count = line.rstrip(":").rsplit(" (", 1)
            section = listing.setdefault(kind.replace("-", " "), {})
            expected = int(count.rstrip(")"))
        else:
            section[line.split()[0]] = line
            assert len(section) <= expected
    return listing


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{kind}:{name}" for kind, name in ENTRIES])
def test_the_cli_lists_every_entry_with_its_description(kind: str, name: str,
                                                        cli_listing: dict[str, dict[str, str]]) -> None:
    line = cli_listing[kind][name]
    assert line.rstrip().endswith(registries()[kind].get(name).description)


@pytest.mark.parametrize("kind", sorted(registries()))
def test_every_registry_refuses_an_unknown_name_listing_its_names(kind: str) -> None:
    registry = registries()[kind]
    with pytest.raises(ConfigError if kind != "backbone" else BackboneError) as caught:
        registry.get("no_such_entry")
    message = str(caught.value)
    assert message.startswith(f"unknown {kind} 'no_such_entry'; choose one of ")
    assert all(name in message for name in registry.names())
    assert "\n" not in message


@pytest.mark.parametrize("kind", sorted(registries()))
def test_every_registry_refuses_a_second_entry_of_a_name(kind: str) -> None:
    registry = registries()[kind]
    first = registry.entries()[0]
    with pytest.raises(ValueError, match="already registered"):
        registry.add(first)
    assert registry.get(first.name) is first and len(registry.names()) == len(set(registry.names()))
