"""One generic registry, used by every kind of pluggable part.

Backbones, strategies, regularisers, domain-adaptation methods, input transforms, transferability
scores and tasks are each one ``Registry``: the same verbs (``register``, ``get``, ``names``,
``describe``) and the same error, which lists the registered names. Each kind keeps its own entry
dataclass (what a backbone entry records differs from what a score entry records); an entry has at
least ``name`` and ``description``, and may add ``listing() -> tuple[str, ...]``: short facts that
``transferkit list`` shows between the name and the description.

Example:
    >>> SCORES = Registry("transferability score", ScoreEntry)
    >>> @SCORES.register("logme", description="LogME evidence", higher_is_better=True)
    ... def logme(features, labels): ...
    >>> SCORES.get("logme").target
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from transferkit.errors import ConfigError, TransferkitError


class _Entry(Protocol):
    name: str
    description: str


E = TypeVar("E", bound=_Entry)
T = TypeVar("T")

_ALL: dict[str, Registry[Any]] = {}


class Registry(Generic[E]):
    """Entries of one kind, by name, in registration order.

    Args:
        kind: what an entry is, in the user's words (``"strategy"``); used in errors and listings.
        make_entry: builds an entry from ``(name, target, **fields)`` in ``register``.
        error: the exception ``get`` raises for an unknown name.
        hint: appended to the unknown-name error (for example the CLI command that lists the names).
    """

    def __init__(self, kind: str, make_entry: Callable[..., E], *, error: type[TransferkitError] = ConfigError,
                 hint: str | None = None) -> None:
        self.kind = kind
        self._make_entry = make_entry
        self._error = error
        self._hint = hint
        self._entries: dict[str, E] = {}
        _ALL[kind] = self

    def add(self, entry: E) -> E:
        """Register a ready-made entry.

        Raises:
            ValueError: the name is taken, or the entry has no description (programming errors, not a user's).
        """
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered")
        if not entry.description.strip():
            raise ValueError(f"{self.kind} {entry.name!r} needs a one-line description (it is listed by the CLI)")
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> E:
        """Take the entry ``name`` out again (a plugin replacing an entry, a test cleaning up after itself)."""
        try:
            return self._entries.pop(name)
        except KeyError:
            raise self.unknown(name) from None

    def register(self, name: str, **fields: Any) -> Callable[[T], T]:
        """Decorator: register the decorated function or class under ``name`` with the entry's other fields."""

        def decorate(target: T) -> T:
            self.add(self._make_entry(name, target, **fields))
            return target

        return decorate

    def get(self, name: str) -> E:
        """The entry named ``name``.

        Raises:
            the registry's error (``ConfigError`` unless set): an unknown name; the message lists the known ones.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str) -> TransferkitError:
        """The error for an unknown ``name`` (for lookups that try more than exact names first)."""
        hint = f" ({self._hint})" if self._hint else ""
        return self._error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}{hint}")

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[E]:
        return list(self._entries.values())

    def describe(self) -> list[tuple[str, str]]:
        """``(name, description)`` per entry, for listings."""
        return [(entry.name, entry.description) for entry in self._entries.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


# importing these fills every registry (the CLI's lazy imports would otherwise leave some empty)
_REGISTERING_PACKAGES = (
    "transferkit.tasks", "transferkit.backbones", "transferkit.strategies", "transferkit.adapt", "transferkit.select",
    "transferkit.report.views", "transferkit.export")


def registries() -> dict[str, Registry[Any]]:
    """Every registry, by kind, in the order the kinds were created; each filled with its built-in entries."""
    for package in _REGISTERING_PACKAGES:
        importlib.import_module(package)
    return dict(_ALL)
