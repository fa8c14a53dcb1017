"""``--config run.toml`` and ``--param KEY=VALUE``: a command's options from a file, a method's settings from both.

A config file holds a command's options by their Python names (``epochs = 3``, ``regularizer = ["l2sp"]``)
and, in its ``[param]`` table, the methods' settings: plain keys for the strategy, or one table per
scope (``[param.strategy]``, ``[param.l2sp]``). Options given on the command line override the file,
and ``--param`` overrides the file's ``[param]``. ``fit`` writes such a file into each run directory
(``config.toml``), so that ``transferkit fit DATA --config RUN/config.toml`` repeats the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from transferkit.config import parse_assignments, read_toml, scoped, write_toml
from transferkit.errors import ConfigError

# the file name ``fit`` records a run's settings under, inside its run directory
RUN_CONFIG = "config.toml"


def merge_config_file(ctx: typer.Context, options: dict[str, Any], path: Path | None, *,
                      not_in_file: Sequence[str]) -> dict[str, Any]:
    """Set ``options`` the command line left at their defaults from the file at ``path``; returns its ``[param]``.

    Raises:
        ConfigError: an unreadable file, or a key that is not one of the command's options.
    """
    if path is None:
        return {}
    values = read_toml(path)
    params = values.pop("param", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{path}: 'param' must be a table ([param]) of method settings")
    by_name = {p.name: p for p in ctx.command.params if p.name in options and p.name not in not_in_file}
    for key, value in values.items():
        if key not in by_name:
            raise ConfigError(f"{path}: unknown option {key!r}; the file may set {', '.join(sorted(by_name))}, "
                              "and method settings under [param]")
        source = ctx.get_parameter_source(key)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            continue  # the command line wins
        default = by_name[key].default
        if value == "none" and default is None:
            options[key] = None
            continue
        try:
            cast = by_name[key].process_value(ctx, value)
        except typer.BadParameter as exc:
            raise ConfigError(f"{path}: {key} = {value!r}: {exc.message}") from None
        options[key] = type(default)(cast) if isinstance(default, Enum) else cast
    return dict(params)


def method_params(file_params: Mapping[str, Any], assignments: Sequence[str] | None, scopes: Sequence[str],
                  *, default: str) -> dict[str, dict[str, Any]]:
    """The settings of each scope: the file's ``[param]`` overridden by ``--param KEY=VALUE``."""
    merged = scoped(file_params, scopes, default=default)
    for scope, values in scoped(parse_assignments(assignments), scopes, default=default).items():
        merged.setdefault(scope, {}).update(values)
    return merged


def write_run_config(path: Path, options: Mapping[str, Any], params: Mapping[str, Mapping[str, Any]]) -> Path:
    """Record a command's options and the methods' whole settings as TOML that ``--config`` reads back."""
    plain = {key: value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
             for key, value in options.items()}
    return write_toml(path, {**plain, "param": {scope: dict(values) for scope, values in params.items()}})
