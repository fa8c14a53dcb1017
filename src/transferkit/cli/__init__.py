"""The command line. It parses arguments and calls the same functions as the Python API.

One module per group of commands; the option types they share are in ``options``. Every command is
registered here, its option groups spread on the command line (``expand_option_groups``) and wrapped by
``user_errors``: the one place where a user's mistake becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from transferkit.cli import adapt, curve, info, lr_find, rank, recording, run, serve, tune, unsupervised, verify
from transferkit.cli.options import expand_option_groups
from transferkit.errors import TransferkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning for images, text and speech: fit pretrained backbones to your data.")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a TransferkitError into one line on stderr and exit status 2 (130 on Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TransferkitError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; no run directory was written", err=True)
            raise typer.Exit(130) from None

    return wrapper


COMMANDS: dict[str, Callable[..., Any]] = {
    "fit": run.fit,
    "evaluate": run.evaluate,
    "predict": run.predict,
    "list": info.list_registered,
    "backbones": info.backbones,
    "strategies": info.strategies,
    "adapt": adapt.adapt,
    "demo": info.demo,
    "lr-find": lr_find.lr_find,
    "zeroshot": unsupervised.zeroshot,
    "cluster": unsupervised.cluster,
    "rank": rank.rank,
    "scores": info.scores,
    "report": recording.report,
    "tune": tune.tune,
    "export": serve.export,
    "serve": serve.serve,
    "curve": curve.curve,
    "verify": verify.verify,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(user_errors(expand_option_groups(_command)))


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["COMMANDS", "app", "main", "user_errors"]
