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

from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.errors import ConfigError, DataError, TransferkitError

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
ImageSizeOpt = Annotated[int | None, typer.Option(help="image side in pixels")]
MaxLengthOpt = Annotated[int | None, typer.Option(help="text length in tokens")]
SeedOpt = Annotated[int, typer.Option(help="random seed")]
PrecisionOpt = Annotated[str, typer.Option(help="training precision: no, bf16, fp16, or auto (bf16 where the CPU or "
                                                "GPU computes in it natively, ~2x faster; full precision elsewhere)")]
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
    regularizer: Annotated[list[str] | None, typer.Option(
        help="regulariser, repeatable: l2sp, bss, supcon, cosine_pairs")] = None,
    l2sp_alpha: Annotated[float, typer.Option(help="L2-SP pull towards the pretrained weights")] = 0.01,
    bss_eta: Annotated[float, typer.Option(help="batch spectral shrinkage weight")] = 0.001,
    unfreeze_every: Annotated[int, typer.Option(help="gradual: epochs between unfreezing steps")] = 1,
    contrastive_loss: Annotated[str, typer.Option(help="contrastive: supcon (supervised contrastive) or "
                                                       "cosine_pairs (SetFit's pair loss)")] = "supcon",
    contrastive_ce: Annotated[bool, typer.Option(help="contrastive: the head's cross-entropy tunes the backbone "
                                                      "too (--no-contrastive-ce: only the contrastive term, as "
                                                      "in SetFit)")] = True,
    from_scratch: Annotated[bool, typer.Option(help="random weights instead of pretrained ones")] = False,
    mixed_precision: PrecisionOpt = "no",
    image_size: ImageSizeOpt = None,
    max_length: MaxLengthOpt = None,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: SeedOpt = 0,
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
                             bss_eta=bss_eta, unfreeze_every=unfreeze_every, contrastive_loss=contrastive_loss,
                             contrastive_ce=contrastive_ce, checkpoint_dir=str(checkpoints),
                             checkpoint_every=checkpoint_every, mixed_precision=mixed_precision)
    clf.fit(samples, eval_set=eval_set, resume=resume, keep_checkpoints=True)
    run = clf.save(out, overwrite=overwrite)
    remove_checkpoints(checkpoints)
    typer.echo(f"fitted in {clf.fit_seconds_:.1f}s; wrote {run}")
    if clf.validation_metrics_ is not None:
        typer.echo(format_metrics(clf.validation_metrics_))


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
        if not entry.pretrained_weights:
            where = "random init only"
        typer.echo(f"{entry.name:<20} {entry.modality or 'any':<6} {where:<26} {entry.description}")


@app.command()
def strategies() -> None:
    """List the registered strategies."""
    from transferkit.strategies import registered_strategies

    for entry in registered_strategies():
        typer.echo(f"{entry.name:<14} {entry.description}")


@app.command()
def adapters() -> None:
    """List the registered domain-adaptation methods (feature-level and deep) and their search grids."""
    from transferkit.adapt import registered_adapters  # importing the package registers every method

    for entry in sorted(registered_adapters(), key=lambda m: (m.level, m.name)):
        grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in entry.grid.items())
        free = " (source-free)" if entry.source_free else ""
        shown = f"  [grid: {grid}]" if grid else ""
        typer.echo(f"{entry.name:<22} {entry.level:<9} {entry.description}{free}{shown}")


def _parse_params(values: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values are read as JSON when they parse (numbers, true/false)."""
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise TransferkitError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@app.command()
@user_errors
def adapt(
    source: Annotated[Path, typer.Option(help="labelled source data (folder, table, .review folder)")],
    target: Annotated[Path, typer.Option(help="target-domain data; read WITHOUT labels")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (adapt.json, predictions.csv, "
                                                          "embedding.png, report.html, model/ run directory)")],
    method: Annotated[str, typer.Option(help="adaptation method (see `transferkit adapters`)")] = "cbst",
    target_eval: Annotated[Path | None, typer.Option(help="labelled target data, used ONLY for the report "
                                                          "(accuracy before/after, oracle choice)")] = None,
    backbone: Annotated[str, typer.Option(help="registered name, timm:NAME, hf:NAME_OR_PATH or a local "
                                               "directory; default: the zoo backbone of the data's modality")] = "",
    selection: Annotated[str, typer.Option(help="label-free hyperparameter selection: dev, iwv, snd, source_val")]
    = "dev",
    param: Annotated[list[str] | None, typer.Option(help="fix a method hyperparameter, KEY=VALUE (repeatable); "
                                                         "the rest of the grid is searched")] = None,
    epochs: Annotated[int | None, typer.Option(help="deep methods: training epochs")] = None,
    lr: Annotated[float | None, typer.Option(help="deep methods: learning rate")] = None,
    batch_size: Annotated[int, typer.Option(help="batch size")] = 32,
    mixed_precision: PrecisionOpt = "no",
    image_size: ImageSizeOpt = None,
    max_length: MaxLengthOpt = None,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output folder (and the checkpoints of an "
                                                 "interrupted run)")] = False,
    resume: Annotated[bool, typer.Option(help="deep methods: continue an interrupted run from its last checkpoint "
                                              "in .OUT.checkpoints/ next to OUT")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="deep methods: checkpoint every N optimizer steps as well "
                                                       "as after each epoch (0: after each epoch only)")] = 1000,
) -> None:
    """Adapt a classifier from labelled SOURCE data to unlabelled TARGET data.

    Feature-level methods (coral, subspace_alignment, entropic_ot, cbst, ...) work on the backbone's
    cached features; their hyperparameters are chosen WITHOUT target labels (--selection). Labels in
    --target-eval only feed the report, where the oracle choice is shown beside the label-free one.

    Deep methods (dann, cdan, self_training, shot, ...) train the backbone and keep checkpoints in the
    hidden folder .OUT.checkpoints/ next to OUT until OUT is written; after a crash or a kill, the same
    command with --resume continues from the last one (finished stages are not trained again) and ends
    as an uninterrupted run would.
    """
    from transferkit.adapt.api import adapt as run_adapt
    from transferkit.checkpoint import remove_checkpoints

    _short_warnings()
    checkpoints = out.with_name(f".{out.name}.checkpoints")
    if overwrite and not resume:
        remove_checkpoints(checkpoints)
    deep: dict[str, Any] = {key: value for key, value in (("epochs", epochs), ("lr", lr)) if value is not None}
    deep.update(checkpoint_dir=str(checkpoints), checkpoint_every=checkpoint_every, resume=resume,
                mixed_precision=mixed_precision)
    read = {key: value for key, value in (("text_column", text_column), ("label_column", label_column))
            if value is not None}
    summary = run_adapt(source, target, method=method, backbone=backbone, out=out, target_eval=target_eval,
                        selection=selection, params=_parse_params(param), seed=seed, batch_size=batch_size,
                        backbone_options=_backbone_options(image_size, max_length) or None, deep_options=deep,
                        modality=modality, overwrite=overwrite, on_error=on_error.value,
                        log=lambda line: typer.echo(line, err=True), **read)
    if "selection" in summary:
        typer.echo(f"{method}: chose {json.dumps(summary['selection']['params'])} by {selection} (no target labels)")
    for label, row in summary.get("accuracy", {}).items():
        source_part = f"held-out source {row['source_val']:.4f}   " if "source_val" in row else ""
        typer.echo(f"{label:<52} {source_part}target {row['target']:.4f}")
    typer.echo(f"adapted in {summary['seconds']:.1f}s; wrote {out}")
    typer.echo(f"the adapted model: transferkit predict {out / 'model'} INPUTS...")


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the three run directories")] =
    Path("transferkit-demo"),
    shots: Annotated[int, typer.Option(help="labelled images per class")] = 10,
    image_size: Annotated[int, typer.Option(help="upscaled image side in pixels")] = 128,
    epochs: Annotated[int, typer.Option(help="fine-tuning epochs")] = 12,
    seed: SeedOpt = 0,
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
    mixed_precision: PrecisionOpt = "no",
    image_size: ImageSizeOpt = None,
    max_length: MaxLengthOpt = None,
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
    seed: SeedOpt = 0,
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


def _split_labels(labels: str) -> list[str]:
    names = [name.strip() for name in labels.split(",") if name.strip()]
    if len(names) < 2:
        raise ConfigError(f"--labels needs at least two comma-separated class names, got {labels!r}")
    return names


def _descriptions(describe: list[str] | None, labels: list[str]) -> dict[str, list[str]]:
    """``LABEL=TEXT`` options to ``{label: [texts]}``; a label may be described several times."""
    found: dict[str, list[str]] = {}
    for entry in describe or []:
        label, sep, text = entry.partition("=")
        if not sep or not text.strip():
            raise ConfigError(f"--describe takes LABEL=TEXT, not {entry!r}")
        if label.strip() not in labels:
            raise ConfigError(f"--describe {entry!r} names label {label.strip()!r}, which is not among --labels "
                              f"{','.join(labels)}")
        found.setdefault(label.strip(), []).append(text.strip())
    return found


@app.command()
@user_errors
def zeroshot(
    data: Annotated[Path, typer.Argument(help="CSV/TSV/JSONL of texts (labels optional, used only to score) or a "
                                              ".txt file of one text per line")],
    labels: Annotated[str, typer.Option(help="the class names, comma-separated (as they appear in DATA's label "
                                             "column, if it has one)")],
    describe: Annotated[list[str] | None, typer.Option(help="LABEL=TEXT: embed TEXT instead of the label's name "
                                                            "(repeatable; several texts per label are averaged)")]
    = None,
    template: Annotated[list[str] | None, typer.Option(help="prompt template with {} for the class, repeatable; "
                                                            "the templates' embeddings are averaged")] = None,
    centre: Annotated[bool, typer.Option(help="subtract each class's mean similarity over DATA (prior "
                                              "correction)")] = True,
    self_train: Annotated[int, typer.Option(help="rounds of self-training on confident predictions (0: none)")]
    = 0,
    strategy: Annotated[str, typer.Option(help="how self-training fits its pseudo-labels: linear_probe, finetune, "
                                                 "...")] = "linear_probe",
    backbone: Annotated[str, typer.Option(help="a text backbone")] = "minilm",
    max_length: MaxLengthOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for predictions.csv, summary.json and, "
                                                                 "with --self-train, the model's run directory")]
    = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: SeedOpt = 0,
) -> None:
    """Classify the texts of DATA without labelled examples: by similarity to the class names.

    Each class name (or its --describe texts) is put through the prompt templates and embedded; each
    text goes to the most similar class. With --self-train N, a classifier is then fitted to the
    confident predictions, N rounds. DATA's labels, if any, are used only to report accuracy.
    """
    from transferkit.adapt.self_training import SelfTrainingClassifier
    from transferkit.adapt.zero_shot import DEFAULT_TEMPLATES, ZeroShotClassifier
    from transferkit.evaluate import classification_metrics, format_metrics

    _short_warnings()
    names = _split_labels(labels)
    descriptions = _descriptions(describe, names)
    if out is not None and out.exists() and not overwrite:
        raise_error(f"output directory {out} already exists; choose another --out or pass --overwrite")
    samples = _read(data, None, text_column, label_column, None, on_error, require_labels=False)
    if samples.modality != "text":
        raise ConfigError(f"zeroshot classifies texts, but {data} holds {samples.modality} data "
                          "(`transferkit cluster` groups images and audio without labels)")
    if samples.labels is not None:
        unknown = sorted(set(samples.labels) - set(names))
        if unknown:
            raise DataError(f"labels {unknown} of {data} are not among --labels {','.join(names)}; list the "
                            "data's label names and give the words to embed with --describe, e.g. "
                            "--labels 0,1 --describe 0=negative --describe 1=positive")
    options = _backbone_options(None, max_length)
    starter = ZeroShotClassifier(names, backbone=backbone, descriptions=descriptions or None,
                                 templates=tuple(template or DEFAULT_TEMPLATES), centre=centre,
                                 backbone_options=options or None, progress=True)
    typer.echo(f"zero-shot {backbone} on {len(samples)} texts, {len(names)} classes", err=True)
    predictions = {"zero_shot": starter.fit(samples).predict(samples).tolist()}
    summary: dict[str, Any] = {"data": str(data), "n": len(samples), "labels": names, "descriptions": descriptions,
                               "templates": list(starter.templates), "centre": centre, "backbone": backbone}
    model = None
    if self_train > 0:
        model = SelfTrainingClassifier(starter, strategy=strategy, rounds=self_train, seed=seed).fit(samples)
        predictions["self_trained"] = model.predict(samples).tolist()
        summary["self_training"] = {"strategy": strategy, "rounds": model.history_}
    if samples.labels is not None:
        summary["metrics"] = {key: classification_metrics(samples.labels, value, names)
                              for key, value in predictions.items()}
    if out is not None:
        _write_zero_shot(out, samples, predictions, summary, model, overwrite)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    if samples.labels is None and out is None:
        final = predictions["self_trained" if model is not None else "zero_shot"]
        for origin, label in zip(samples.origins, final, strict=True):
            typer.echo(f"{origin}\t{label}")
    for key, metrics in summary.get("metrics", {}).items():
        typer.echo(f"{key.replace('_', '-')}:\n{format_metrics(metrics)}")
    if model is not None:
        for r in model.history_:
            typer.echo(f"round {r['round']}: {r['pseudo_labels']} pseudo-labels, {r['changed']:.1%} predictions "
                       "changed")
    if out is not None:
        typer.echo(f"wrote {out}")


def _write_zero_shot(out: Path, samples: Any, predictions: dict[str, list[str]], summary: dict[str, Any],
                     model: Any, overwrite: bool) -> None:
    import csv

    from transferkit.artifact import staged_directory, write_json

    with staged_directory(out, overwrite=overwrite) as staging:
        with (staging / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["item", *predictions, *(["label"] if samples.labels is not None else [])])
            for i, origin in enumerate(samples.origins):
                row = [origin, *(values[i] for values in predictions.values())]
                writer.writerow(row + ([samples.labels[i]] if samples.labels is not None else []))
        if model is not None:
            model.classifier_.save(staging / "model")
            summary = {**summary, "model": "model/ (load with `transferkit predict`)"}
        write_json(staging / "summary.json", summary)


class MapMethod(StrEnum):
    tsne = "tsne"
    pca = "pca"
    none = "none"


@app.command()
@user_errors
def cluster(
    data: DataArg,
    k: Annotated[int | None, typer.Option("--k", help="number of clusters (default: chosen by silhouette)")] = None,
    k_min: Annotated[int, typer.Option(help="smallest k tried when --k is not given")] = 2,
    k_max: Annotated[int, typer.Option(help="largest k tried when --k is not given")] = 10,
    backbone: Annotated[str, typer.Option(help="backbone whose features are clustered; default: the zoo "
                                               "backbone of the data's modality")] = "",
    pca_dims: Annotated[int, typer.Option(help="principal components kept before k-means (0: no PCA)")] = 50,
    map_method: Annotated[MapMethod, typer.Option("--map", help="2-D map written to OUT/map.png")] = MapMethod.tsne,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for assignments.csv/.json, summary.json "
                                                                 "and map.png")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    image_size: ImageSizeOpt = None,
    max_length: MaxLengthOpt = None,
    modality: ModalityOpt = None,
    text_column: TextColOpt = None,
    label_column: LabelColOpt = None,
    path_column: PathColOpt = None,
    on_error: OnErrorOpt = OnError.skip,
    seed: SeedOpt = 0,
) -> None:
    """Group the samples of DATA by k-means on pretrained features, without labels.

    Labels in DATA (class subfolders, a label column), if any, are used only to score the clusters
    (NMI, ARI, matched accuracy).
    """
    import numpy as np

    from transferkit.adapt.clustering import FeatureClusterer, check_k, clustering_scores, map_2d, write_clustering

    _short_warnings()
    if out is not None and out.exists() and not overwrite:
        raise_error(f"output directory {out} already exists; choose another --out or pass --overwrite")
    samples = _read(data, modality, text_column, label_column, path_column, on_error, require_labels=False)
    if k is not None:
        check_k(k, len(samples))
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    options = _backbone_options(image_size, max_length)
    typer.echo(f"clustering {len(samples)} {samples.modality} samples on {name} features", err=True)
    clusterer = FeatureClusterer(name, k=k, k_min=k_min, k_max=k_max, pca_dims=pca_dims or None,
                                 backbone_options=options or None, seed=seed, progress=True).fit(samples)
    sizes = np.bincount(clusterer.labels_, minlength=clusterer.k_).tolist()
    summary: dict[str, Any] = {"data": str(data), "n": len(samples), "backbone": name, "k": clusterer.k_,
                               "k_chosen": k is None, "silhouette": clusterer.silhouette_, "cluster_sizes": sizes}
    if samples.labels is not None:
        summary["scores"] = clustering_scores(samples.labels, clusterer.labels_)
    if out is not None:
        coords = None
        if map_method is not MapMethod.none:
            coords = map_2d(clusterer.preprocessing_(clusterer.features(samples)), method=map_method.value, seed=seed)
        write_clustering(out, origins=samples.origins, clusters=clusterer.labels_.tolist(), summary=summary,
                         coords=coords, true_labels=samples.labels, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    how = "chosen by silhouette" if k is None else "given"
    typer.echo(f"k = {clusterer.k_} ({how}); cluster sizes {sizes}")
    if clusterer.silhouette_:
        typer.echo("silhouette: " + "  ".join(f"k={key}: {value:.3f}" for key, value in clusterer.silhouette_.items()))
    if "scores" in summary:
        scores = summary["scores"]
        typer.echo(f"against the labels: NMI {scores['nmi']:.3f}  ARI {scores['ari']:.3f}  "
                   f"matched accuracy {scores['matched_accuracy']:.3f}")
    if out is not None:
        typer.echo(f"wrote {out}")


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
    image_size: ImageSizeOpt = None,
    max_length: MaxLengthOpt = None,
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
