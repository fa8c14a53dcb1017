"""``rank``: choosing a backbone for the data by transferability scores, without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from transferkit.cli.options import (
    DataArg,
    InputSize,
    JsonOpt,
    ModalityOpt,
    OverwriteOpt,
    Reading,
    refuse_existing,
    short_warnings,
    split_list,
)
from transferkit.cli.recording import Recording
from transferkit.params import option_range


def rank(
    data: DataArg,
    candidates: Annotated[str, typer.Option(help="comma-separated backbones to compare (scratch:NAME for the same "
                                                 "net randomly initialised); default: every offline zoo backbone "
                                                 "of the data's modality")] = "",
    scores: Annotated[str, typer.Option(help="comma-separated scores to compute (see `transferkit scores`); "
                                             "default: all registered")] = "",
    sort_by: Annotated[str | None, typer.Option(help="score to rank by (default: transferkit.select.DEFAULT_SCORE, "
                                                     "logme)")] = None,
    batch_size: Annotated[int, typer.Option(help="feature-extraction batch size", **option_range("batch_size"))] = 32,
    as_json: JsonOpt = False,
    modality: ModalityOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for ranking.json and report.html")] = None,
    overwrite: OverwriteOpt = False,
    *,
    size: InputSize,
    reading: Reading,
    recording: Recording,
) -> None:
    """Rank candidate backbones for labelled DATA by transferability scores, without training them.

    Extracts each candidate's frozen features once (cached, so a later linear-probe fit reuses them),
    computes every score and prints the candidates best first, with the time the ranking took.
    LEEP and NCE need the source task's head (the ImageNet classifier of the image zoo); other
    candidates show '-' for them. With --out, the ranking is also written as ranking.json and report.html.
    """
    from transferkit.select import SCORES, rank_backbones

    short_warnings()
    refuse_existing(out, overwrite, inputs=(data,))
    samples = reading.read(data, modality)
    names = split_list(candidates) or None
    score_names = split_list(scores) or SCORES.names()
    typer.echo(f"ranking {len(names) if names else 'the offline'} candidates on {len(samples)} "
               f"{samples.modality} samples", err=True)
    ranking = rank_backbones(samples, names, score_names, sort_by=sort_by,
                             backbone_options=size.backbone_options(), batch_size=batch_size)
    found = ranking.to_dict()
    if out is not None:
        _write_ranking(out, found, recording, overwrite)
    recording.log("rank", params={"data": str(data), "candidates": candidates or "zoo", "sort_by": ranking.sort_by},
                  metrics={row["candidate"]: row["scores"] for row in found["rows"]}, folder=out)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    typer.echo(ranking.format())
    typer.echo(f"best by {ranking.sort_by}: {ranking.best}")


def _write_ranking(out: Path, found: dict, recording: Recording, overwrite: bool) -> None:
    from transferkit.report.ranking import write_rank_report
    from transferkit.safety import staged_directory, write_json

    with staged_directory(out, overwrite=overwrite) as staging:
        write_json(staging / "ranking.json", found)
    recording.write_report(lambda: write_rank_report(out, found))
