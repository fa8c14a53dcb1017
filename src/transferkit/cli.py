"""The command line. It parses arguments and calls the same functions as the Python API."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from transferkit.errors import TransferkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Transfer learning for images, text and speech: fit pretrained backbones to your data.")

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a TransferkitError into one line on stderr and exit status 2."""

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

    return wrapper  # type: ignore[return-value]


def _short_warnings() -> None:
    warnings.formatwarning = lambda message, category, *_a, **_k: f"warning: {message}\n"  # type: ignore[assignment]


class OnError(StrEnum):
    skip = "skip"
    fail = "fail"


DataArg = Annotated[Path, typer.Argument(help="image folder (one subfolder per class), CSV/TSV/JSONL of texts "
                                              "and labels, audio folder, or CSV of media paths and labels")]
ModalityOpt = Annotated[str | None, typer.Option(help="image, text or audio (inferred when omitted)")]
TextColOpt = Annotated[str | None, typer.Option(help="text column of a table (default: text/sentence/content/...)")]
LabelColOpt = Annotated[str | None, typer.Option(help="label column of a table (default: label/class/target/...)")]
PathColOpt = Annotated[str | None, typer.Option(help="column of media file paths in a table (default: path/file/...)")]
OnErrorOpt = Annotated[OnError, typer.Option(
    help="a corrupt or unreadable file: 'skip' it with a warning (a count is printed), or 'fail' at once")]


def _backbone_options(image_size: int | None, max_length: int | None) -> dict[str, Any]:
    """Backbone options given on the command line (unset ones keep the backbone's defaults)."""
    given = {"image_size": image_size, "max_length": max_length}
    return {key: value for key, value in given.items() if value is not None}


def _read(data: Path, modality: str | None, text_column: str | None, label_column: str | None,
          path_column: str | None, on_error: OnError, require_labels: bool = True) -> Any:
    from transferkit.data import read_dataset

    samples = read_dataset(data, modality=modality, text_column=text_column, label_column=label_column,
                           path_column=path_column, on_error=on_error.value, require_labels=require_labels)
    skipped = getattr(samples, "skipped", [])
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable file(s) in {data}", err=True)
    return samples


@app.command()
@user_errors
def fit(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory to write")],
    backbone: Annotated[str, typer.Option(help="registered name, timm:NAME, hf:NAME_OR_PATH or a local "
                                               "directory; default: the zoo backbone of the data's modality")] = "",
    strategy: Annotated[str, typer.Option(help="linear_probe, finetune, partial, gradual, lp_ft, ... "
                                                 "(see `transferkit strategies`)")] =
    "linear_probe",
    val: Annotated[Path | None, typer.Option(help="labelled validation data (default: a split of DATA)")] = None,
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out for validation")] = 0.1,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
    layer_decay: Annotated[float | None, typer.Option(help="learning-rate factor per layer group toward the input")]
    = None,
    train_last_k: Annotated[int | None, typer.Option(help="fine-tune only the last k layer groups")] = None,
    regularizer: Annotated[list[str] | None, typer.Option(help="fine-tuning regulariser, repeatable: l2sp, bss")]
    = None,
    l2sp_alpha: Annotated[float, typer.Option(help="L2-SP pull towards the pretrained weights")] = 0.01,
    bss_eta: Annotated[float, typer.Option(help="batch spectral shrinkage weight")] = 0.001,
    unfreeze_every: Annotated[int, typer.Option(help="gradual: epochs between unfreezing steps")] = 1,
    from_scratch: Annotated[bool, typer.Option(help="random weights instead of pretrained ones")] = False,
    image_size: Annotated[int | None, typer.Option(help="image side in pixels")] = None,
    max_length: Annotated[int | None, typer.Option(help="text length in tokens")] = None,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run directory (and the checkpoints of an "
                                                 "interrupted run)")] = False,
    resume: Annotated[bool, typer.Option(help="continue an interrupted fit from its last checkpoint in "
                                              "OUT.checkpoints/")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint every N optimizer steps as well as after each "
                                                       "epoch (0: after each epoch only)")] = 1000,
) -> None:
    """Fit a pretrained backbone to labelled DATA and write a run directory.

    Corrupt or unreadable files are skipped with a warning and a count (--on-error skip, the default)
    or stop the run with the file's name (--on-error fail). The run directory is written only when
    fitting succeeded, so an interrupted run leaves nothing half-written. Strategies that train with
    the loop keep checkpoints in OUT.checkpoints/ until the run directory is written; after a crash,
    the same command with --resume continues from the last one and ends as an uninterrupted run would.
    """
    from transferkit.checkpoint import remove_checkpoints
    from transferkit.estimator import TransferClassifier
    from transferkit.evaluate import format_metrics

    _short_warnings()
    if out.exists() and not overwrite:
        raise_error(f"run directory {out} already exists; choose another --out or pass --overwrite")
    checkpoints = out.with_name(f"{out.name}.checkpoints")
    if overwrite and not resume:
        remove_checkpoints(checkpoints)
    samples = _read(data, modality, text_column, label_column, path_column, on_error)
    eval_set = None
    if val is not None:
        val_samples = _read(val, samples.modality, text_column, label_column, path_column, on_error)
        eval_set = (val_samples, None)
    options = _backbone_options(image_size, max_length)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"fitting {name} ({strategy}) on {len(samples)} {samples.modality} samples", err=True)
    clf = TransferClassifier(backbone=name, strategy=strategy, pretrained=not from_scratch,
                             backbone_options=options or None, epochs=epochs, lr=lr, batch_size=batch_size,
                             layer_decay=layer_decay, train_last_k=train_last_k, val_fraction=val_fraction,
                             seed=seed, regularizers=tuple(regularizer or ()), l2sp_alpha=l2sp_alpha,
                             bss_eta=bss_eta, unfreeze_every=unfreeze_every, checkpoint_dir=str(checkpoints),
                             checkpoint_every=checkpoint_every)
    clf.fit(samples, eval_set=eval_set, resume=resume, keep_checkpoints=True)
    run = clf.save(out, overwrite=overwrite)
    remove_checkpoints(checkpoints)
    typer.echo(f"fitted in {clf.fit_seconds_:.1f}s; wrote {run}")
    if clf.validation_metrics_ is not None:
        typer.echo(format_metrics(clf.validation_metrics_))


DEFAULT_BACKBONE = {"image": "efficientnet_lite0", "text": "minilm", "audio": "whisper_tiny_en"}


def raise_error(message: str) -> None:
    raise TransferkitError(message)


@app.command()
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="run directory written by `transferkit fit`")],
    data: DataArg,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
    name: Annotated[str, typer.Option(help="name of the evaluation in RUN/evaluations/NAME.json")] = "",
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
) -> None:
    """Evaluate a run on labelled DATA: accuracy, macro-F1, per-class precision/recall, confusion matrix.

    The metrics are also written to RUN/evaluations/NAME.json (NAME defaults to DATA's file name).
    """
    from transferkit.artifact import write_json
    from transferkit.estimator import load
    from transferkit.evaluate import format_metrics

    _short_warnings()
    clf = load(run)
    samples = _read(data, clf.modality_, text_column, label_column, path_column, on_error)
    metrics = clf.evaluate(samples)
    folder = run / "evaluations"
    folder.mkdir(exist_ok=True)
    write_json(folder / f"{name or data.stem or 'data'}.json", {"data": str(data), **metrics})
    typer.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics))


@app.command()
@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="run directory written by `transferkit fit`")],
    inputs: Annotated[list[str], typer.Argument(help="image/audio files or folders, or texts (or .txt files, "
                                                     "one text per line)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
    top_k: Annotated[int, typer.Option(help="probabilities shown per input")] = 3,
) -> None:
    """Predict labels and probabilities for INPUTS with a fitted run."""
    from transferkit.data import read_inputs
    from transferkit.estimator import load

    _short_warnings()
    clf = load(run)
    clf.progress = False
    samples = read_inputs(inputs, clf.modality_)
    probabilities = clf.predict_proba(samples)
    classes = clf.classes_.tolist()
    for origin, row in zip(samples.origins, probabilities, strict=True):
        order = row.argsort()[::-1][: max(1, top_k)]
        if as_json:
            typer.echo(json.dumps({"input": origin, "label": classes[order[0]],
                                   "probabilities": {classes[i]: float(row[i]) for i in order}}))
        else:
            shown = "  ".join(f"{classes[i]}={row[i]:.3f}" for i in order)
            typer.echo(f"{origin}\t{classes[order[0]]}\t{shown}")


@app.command()
def backbones() -> None:
    """List the registered backbones and backbone sources."""
    from transferkit.backbones import registered_backbones

    for entry in registered_backbones():
        where = "offline" if entry.offline else "needs internet for weights"
        typer.echo(f"{entry.name:<20} {entry.modality or 'any':<6} {where:<26} {entry.description}")


@app.command()
def strategies() -> None:
    """List the registered strategies."""
    from transferkit.strategies import registered_strategies

    for entry in registered_strategies():
        typer.echo(f"{entry.name:<14} {entry.description}")


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the three run directories")] =
    Path("transferkit-demo"),
    shots: Annotated[int, typer.Option(help="labelled images per class")] = 10,
    image_size: Annotated[int, typer.Option(help="upscaled image side in pixels")] = 128,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs")] = 12,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing demo folder")] = False,
) -> None:
    """Transfer ImageNet EfficientNet-Lite0 to handwritten digits with a few labels, offline.

    Fits a linear probe, a fine-tune, and the same network from scratch; prints accuracy and time.
    """
    from transferkit.demo import format_table, run_demo

    rows = run_demo(out, shots=shots, image_size=image_size, epochs=epochs, seed=seed, overwrite=overwrite)
    typer.echo("")
    typer.echo(format_table(rows))
    best = max(rows, key=lambda r: r.accuracy)
    typer.echo(f"\nrun directories are in {out}/; try:\n  transferkit predict {best.run_dir} {out}/examples/*.png")


@app.command("lr-find")
@user_errors
def lr_find(
    data: DataArg,
    backbone: Annotated[str, typer.Option(help="registered name, timm:NAME, hf:NAME_OR_PATH or a local "
                                               "directory; default: the zoo backbone of the data's modality")] = "",
    strategy: Annotated[str, typer.Option(help="the fine-tuning strategy to find a rate for: finetune or "
                                                 "partial")] = "finetune",
    batch_size: Annotated[int, typer.Option(help="batch size (use the one you will fit with)")] = 32,
    layer_decay: Annotated[float | None, typer.Option(help="learning-rate factor per layer group toward the input")]
    = None,
    train_last_k: Annotated[int | None, typer.Option(help="fine-tune only the last k layer groups")] = None,
    from_scratch: Annotated[bool, typer.Option(help="random weights instead of pretrained ones")] = False,
    image_size: Annotated[int | None, typer.Option(help="image side in pixels")] = None,
    max_length: Annotated[int | None, typer.Option(help="text length in tokens")] = None,
    start_lr: Annotated[float, typer.Option(help="first learning rate of the ramp")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="last learning rate of the ramp")] = 1.0,
    num_steps: Annotated[int, typer.Option(help="optimizer steps of the ramp")] = 100,
    plot: Annotated[Path | None, typer.Option(help="write the loss curve and the suggestion to this PNG")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result (curve included) as JSON")] = False,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Suggest a fine-tuning learning rate for DATA with a learning-rate range test.

    Trains a copy of the model for NUM_STEPS steps while the rate rises from START_LR to END_LR,
    stops when the loss diverges, and prints the suggested --lr for `transferkit fit` with the rule
    that chose it. Nothing is saved except the --plot image.
    """
    from transferkit.lr_finder import LRFinderConfig, find_lr

    _short_warnings()
    samples = _read(data, modality, text_column, label_column, path_column, on_error)
    options = _backbone_options(image_size, max_length)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"range test of {name} ({strategy}) on {len(samples)} {samples.modality} samples", err=True)
    result = find_lr(samples, backbone=name, strategy=strategy, pretrained=not from_scratch,
                     backbone_options=options or None, batch_size=batch_size, layer_decay=layer_decay,
                     train_last_k=train_last_k, seed=seed,
                     config=LRFinderConfig(start_lr=start_lr, end_lr=end_lr, num_steps=num_steps))
    if plot is not None:
        result.plot(plot, title=f"range test: {name} ({strategy}), batch {batch_size}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    stop = f"diverged at {result.lrs[-1]:.2g}" if result.diverged else f"ran to {result.lrs[-1]:.2g}"
    typer.echo(f"suggested lr: {result.suggestion:.2g}")
    typer.echo(f"rule: {result.rule}")
    typer.echo(f"tested {result.lrs[0]:.2g} to {result.lrs[-1]:.2g} in {len(result.lrs)} steps ({stop})")
    if plot is not None:
        typer.echo(f"wrote {plot}")
    same = "".join(f" --{flag} {value}" for flag, value in (("max-length", max_length), ("image-size", image_size),
                                                             ("layer-decay", layer_decay),
                                                             ("train-last-k", train_last_k)) if value is not None)
    typer.echo(f"try: transferkit fit {data} --backbone {name} --strategy {strategy} --batch-size {batch_size}{same}"
               f"{' --from-scratch' if from_scratch else ''} --lr {result.suggestion:.2g} --out RUN")


@app.command()
@user_errors
def rank(
    data: DataArg,
    candidates: Annotated[str, typer.Option(help="comma-separated backbones to compare (scratch:NAME for the same "
                                                 "net randomly initialised); default: every offline zoo backbone "
                                                 "of the data's modality")] = "",
    scores: Annotated[str, typer.Option(help="comma-separated scores to compute (see `transferkit scores`); "
                                             "default: all registered")] = "",
    sort_by: Annotated[str | None, typer.Option(help="score to rank by (default: transferkit.select.DEFAULT_SCORE, "
                                                     "logme)")] = None,
    batch_size: Annotated[int, typer.Option(help="feature-extraction batch size")] = 32,
    image_size: Annotated[int | None, typer.Option(help="image side in pixels")] = None,
    max_length: Annotated[int | None, typer.Option(help="text length in tokens")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the ranking as JSON")] = False,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
) -> None:
    """Rank candidate backbones for labelled DATA by transferability scores, without training them.

    Extracts each candidate's frozen features once (cached, so a later linear-probe fit reuses them),
    computes every score and prints the candidates best first, with the time the ranking took.
    LEEP and NCE need the source task's head (the ImageNet classifier of the image zoo); other
    candidates show '-' for them.
    """
    from transferkit.select import rank_backbones, registered_scores

    _short_warnings()
    samples = _read(data, modality, text_column, label_column, path_column, on_error)
    names = _split_list(candidates) or None
    score_names = _split_list(scores) or [entry.name for entry in registered_scores()]
    typer.echo(f"ranking {len(names) if names else 'the offline'} candidates on {len(samples)} "
               f"{samples.modality} samples", err=True)
    ranking = rank_backbones(samples, names, score_names, sort_by=sort_by,
                             backbone_options=_backbone_options(image_size, max_length) or None, batch_size=batch_size)
    if as_json:
        typer.echo(json.dumps(ranking.to_dict(), indent=2))
        return
    typer.echo(ranking.format())
    typer.echo(f"best by {ranking.sort_by}: {ranking.best}")


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command("scores")
def list_scores() -> None:
    """List the registered transferability scores (for `transferkit rank --scores`)."""
    from transferkit.select import registered_scores

    for entry in registered_scores():
        needs = "needs source head" if entry.needs_source_probs else ""
        typer.echo(f"{entry.name:<16} {needs:<18} {entry.description}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
