"""Method settings: one config dataclass per strategy, regulariser and adaptation method.

Each registered method names its config class (``StrategyEntry.config``, ...). Its settings come
from a dict (Python), ``--param KEY=VALUE`` (the CLI, values as text) or a TOML file read with the
standard library (``transferkit fit --config run.toml``); ``make_config`` turns any of them into the
dataclass, converting text to the fields' types, and refuses unknown keys and values of the wrong
type with one line that names the method's known keys.

Example:
    >>> make_config(GradualConfig, {"unfreeze_every": "2"}, what="strategy 'gradual'")
    GradualConfig(unfreeze_every=2)
"""

from __future__ import annotations

import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from transferkit.errors import ConfigError

C = TypeVar("C")

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def known_keys(config_class: type) -> list[str]:
    """The settings of a config dataclass, in declaration order."""
    return [f.name for f in fields(config_class)]


def make_config(config_class: type[C], values: Mapping[str, Any] | None = None, *, what: str) -> C:
    """An instance of ``config_class`` with ``values`` set; text values are parsed into the fields' types.

    Args:
        config_class: a dataclass whose fields all have defaults.
        values: the settings to change; an instance of ``config_class`` is taken as is.
        what: the method, for messages (``"strategy 'lora'"``).

    Raises:
        ConfigError: an unknown key (the message lists the known ones), a value that is not of its
            field's type, or a value the config's own check refuses.
    """
    if isinstance(values, config_class):
        return values
    values = dict(values or {})
    keys = known_keys(config_class)
    unknown = [key for key in values if key not in keys]
    if unknown:
        raise ConfigError(f"{what} has no setting {', '.join(map(repr, unknown))}; its settings are "
                          f"{', '.join(keys) if keys else 'none'}")
    hints = typing.get_type_hints(config_class)
    converted = {key: convert(value, hints[key], name=f"{key}={value!r} ({what})") for key, value in values.items()}
    try:
        return config_class(**converted)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def settings_listing(config_class: type) -> str:
    """``"settings: r=8 alpha=16 ..."``: a config's keys with their defaults, for the CLI's listings."""
    defaults = config_dict(config_class())
    shown = {key: repr(value) if isinstance(value, str) and (not value or any(c.isspace() for c in value)) else value
             for key, value in defaults.items()}  # a template with spaces or newlines stays on its line, quoted
    return "settings: " + " ".join(f"{key}={value}" for key, value in shown.items()) if shown else ""


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain values (tuples as lists), for manifests and TOML."""
    assert is_dataclass(config) and not isinstance(config, type)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}


def convert(value: Any, annotation: Any, *, name: str) -> Any:
    """``value`` as an instance of the type ``annotation`` (text is parsed; ``"none"`` is None where allowed).

    Raises:
        ConfigError: ``value`` cannot be read as that type (``name`` says which setting).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        if len(options) < len(args) and (value is None or (isinstance(value, str) and value.lower() in ("none", ""))):
            return None
        for option in options:
            try:
                return convert(value, option, name=name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {_describe(annotation)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}: expected one of {', '.join(map(str, args))}")
    if origin in (tuple, list):
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, Sequence):
            raise ConfigError(f"{name}: expected a comma-separated list")
        item_type = args[0] if args else str
        return (tuple if origin is tuple else list)(convert(item, item_type, name=name) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{name}: expected true or false")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected {annotation.__name__}")
        try:
            number = annotation(value) if isinstance(value, str | int | float) else None
        except ValueError:
            number = None
        if number is None or (annotation is int and isinstance(value, float) and value != number):
            raise ConfigError(f"{name}: expected {'an integer' if annotation is int else 'a number'}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected text")
    return value


def _describe(annotation: Any) -> str:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    names = [getattr(arg, "__name__", str(arg)) for arg in args]
    return " or ".join(names) + (" or none" if len(args) < len(typing.get_args(annotation)) else "")


def parse_assignments(items: Sequence[str] | None) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (``--param``, repeatable) as a dict; later assignments win.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    parsed: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE, e.g. --param r=16")
        parsed[key.strip()] = value.strip()
    return parsed


def scoped(params: Mapping[str, Any], scopes: Sequence[str], *, default: str) -> dict[str, dict[str, Any]]:
    """Split ``{"l2sp.alpha": 0.1, "r": 16, "strategy.alpha": 32}`` into ``{scope: {key: value}}``.

    A key ``SCOPE.KEY`` goes to ``SCOPE`` (one of ``scopes``); a plain key, and a nested table (from
    TOML, ``[l2sp]``), go to ``default`` or to their table's scope.

    Raises:
        ConfigError: a ``SCOPE.KEY`` whose scope is not one of ``scopes``.
    """
    split: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            scope, values = key, dict(value)
        elif "." in key:
            scope, _, inner = key.partition(".")
            values = {inner: value}
        else:
            scope, values = default, {key: value}
        if scope not in scopes:
            raise ConfigError(f"unknown settings scope {scope!r} in {key!r}; use one of {', '.join(scopes)}")
        split.setdefault(scope, {}).update(values)
    return split


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict (the standard library's ``tomllib``).

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML (with the file's name).
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def write_toml(path: str | Path, values: Mapping[str, Any]) -> Path:
    """Write settings (with one level of tables) as TOML that ``read_toml`` and ``make_config`` read back.

    TOML has no null: None is written as ``"none"``, which ``convert`` reads back as None.
    """
    import tomlkit

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, tuple | list):
            return [plain(item) for item in value]
        return "none" if value is None else value

    from transferkit.safety import write_text

    return write_text(Path(path), tomlkit.dumps(plain(values)))
