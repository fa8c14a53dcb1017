"""``transferkit verify RUN A B``: are two inputs of one identity (speaker, face)? For verification runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from transferkit.cli.options import RunArg, short_warnings


def verify(
    run: RunArg,
    first: Annotated[str, typer.Argument(help="an audio or image file (the run's modality), or a text")],
    second: Annotated[str, typer.Argument(help="the input to compare it with")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score FIRST against SECOND with a run fitted with --task verification: the cosine of their
    embeddings, and "same" or "different" at the threshold chosen on the run's validation data."""
    from transferkit.data import read_inputs
    from transferkit.errors import ConfigError, DataError
    from transferkit.estimator import load

    short_warnings()
    clf = load(run)
    if clf.task_.name != "verification":
        raise ConfigError(f"{run} is a {clf.task_.name} run; verify needs a run fitted with --task verification")
    clf.progress = False
    samples = read_inputs([first, second], clf.modality_, on_error="fail")
    if len(samples) != 2:
        raise DataError(f"verify compares two inputs, not {len(samples)}: give two files, not folders")
    embeddings = clf.task_.embeddings(clf.model_, samples, batch_size=2, use_cache=False)
    result = clf.task_.verify(embeddings[0], embeddings[1])
    decision = "same" if result["same"] else "different"
    if as_json:
        typer.echo(json.dumps({"first": samples.origins[0], "second": samples.origins[1], **result,
                               "decision": decision}))
    else:
        typer.echo(f"{result['score']:.4f}\t{decision}\t(threshold {result['threshold']:.4f})")
