"""``fit``, ``evaluate`` and ``predict``: a run directory is written, scored and used."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from transferkit.auto.budget import parse_budget
from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.cli.options import (
    BackboneOpt,
    BatchSizeOpt,
    Checkpointing,
    DataArg,
    FromScratchOpt,
    InputSize,
    JsonOpt,
    LayerDecayOpt,
    ModalityOpt,
    PrecisionOpt,
    Reading,
    RunArg,
    SeedOpt,
    refuse_existing,
    short_warnings,
)
from transferkit.cli.recording import Recording
from transferkit.errors import ConfigError
from transferkit.params import option_range
from transferkit.strategies.regularizers import REGULARIZERS

if TYPE_CHECKING:
    from transferkit.data import Samples


# the options of ``fit`` a config file may set (and ``config.toml`` records), besides its option groups' (but not
# --overwrite and --resume), in the order ``fit`` unpacks them
FIT_OPTIONS = ("backbone", "strategy", "val", "val_fraction", "epochs", "lr", "batch_size", "layer_decay",
               "regularizer", "from_scratch", "mixed_precision", "modality", "seed", "task")


def fit(
    ctx: typer.Context,
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory to write")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of options and [param] settings "
                                                "(a run's config.toml repeats it); the command line overrides it")]
    = None,
    backbone: BackboneOpt = "",
    strategy: Annotated[str | None, typer.Option(help="linear_probe, finetune, partial, gradual, lp_ft, ... "
                                                        "(see `transferkit strategies`); default: the task's own (ner: "
                                                        "finetune, batches of 8), else chosen on validation data "
                                                        "(see --budget)")] = None,
    budget: Annotated[str | None, typer.Option(help="without --strategy: time the choice may take, e.g. 90s, 10m, "
                                                    "1h; LP-FT competes with the linear probe only when it fits "
                                                    "(default: 3x the probe's time, room for LP-FT on the top "
                                                    "half of a text encoder or Whisper only)")] = None,
    val: Annotated[Path | None, typer.Option(help="labelled validation data (default: a split of DATA)")] = None,
    val_fraction: Annotated[float, typer.Option(help="share of DATA held out for validation",
                                                **option_range("val_fraction"))] = 0.1,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs", **option_range("epochs"))] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate", **option_range("lr"))] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size (default: 32, or the task's default with no "
                                                        "--strategy)", **option_range("batch_size"))] = None,
    layer_decay: LayerDecayOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        help="a strategy or regulariser setting, KEY=VALUE (repeatable): r=16 (the strategy's), "
             "strategy.unfreeze_every=2, l2sp.alpha=0.1, task.tile_size=512 (detection); `transferkit strategies` "
             "lists the keys")] = None,
    regularizer: Annotated[list[str] | None, typer.Option(
        help=f"regulariser, repeatable: {', '.join(REGULARIZERS.names())}")] = None,
    from_scratch: FromScratchOpt = False,
    mixed_precision: PrecisionOpt = "no",
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    task: Annotated[str | None, typer.Option(help="classification, multilabel, regression, ner, verification or "
                                                  "generation (`transferkit tasks`); default: ner for a .conll/.bio "
                                                  "file, multilabel for a|b labels or a file in several class "
                                                  "folders, else classification; numeric labels must say which")]
    = None,
    *,
    size: InputSize,
    reading: Reading,
    checkpointing: Checkpointing,
    recording: Recording,
) -> None:
    """Fit a pretrained backbone to labelled DATA and write a run directory.

    The task is what a label is: one class (classification), several (multilabel: a table cell
    `a|b`, or the same file in several class folders) or a number (regression: a numeric label
    column, with --task regression).

    Corrupt or unreadable files are skipped with a warning and a count (--on-error skip, the default)
    or stop the run with the file's name (--on-error fail). The run directory is written only when
    fitting succeeded, so an interrupted run leaves nothing half-written. Strategies that train with
    the loop keep checkpoints in OUT.checkpoints/ until the run directory is written; after a crash,
    the same command with --resume continues from the last one and ends as an uninterrupted run would.
    The run directory records every setting in config.toml: --config RUN/config.toml repeats the run.
    It also holds report.html (learning curves, confusion matrix, calibration, worst examples, feature
    map; --no-report: none), and the run is logged to MLflow (--no-track: not).

    Without --strategy, fit chooses on validation data (a split of DATA, or --val): the backbone by
    transferability score among the installed zoo backbones of the modality (unless --backbone names
    one), the linear probe, and LP-FT when the time left allows it (--budget, else 3x the probe's time):
    of the whole backbone with a learning rate from the range test, or of the top half of a backbone
    that can be cut (MiniLM, Whisper) on the frozen layers' outputs kept once; LP-FT is kept only when
    it beats the probe. RUN/choices.json says what was chosen
    and why.
    """
    from transferkit.checkpoint import checkpoint_folder, remove_checkpoints
    from transferkit.cli.recording import fit_report, run_metrics
    from transferkit.cli.settings import RUN_CONFIG, merge_config_file, method_params, write_run_config
    from transferkit.distributed import is_main_process
    from transferkit.estimator import TransferEstimator
    from transferkit.tasks import TASKS
    from transferkit.tasks.base import infer_task, task_for_file

    short_warnings()
    given = locals()
    chosen = {key: given[key] for key in FIT_OPTIONS}
    chosen.update(asdict(size), **asdict(reading), checkpoint_every=checkpointing.checkpoint_every)
    file_params = merge_config_file(ctx, chosen, config, not_in_file=("data", "out", "overwrite", "resume"))
    (backbone, strategy, val, val_fraction, epochs, lr, batch_size, layer_decay, regularizer, from_scratch,
     mixed_precision, modality, seed, task) = (chosen[key] for key in FIT_OPTIONS)
    size = InputSize(**{f.name: chosen[f.name] for f in fields(InputSize)})
    reading = Reading(**{f.name: chosen[f.name] for f in fields(Reading)})
    checkpointing = replace(checkpointing, checkpoint_every=chosen["checkpoint_every"])
    settings = method_params(file_params, param, ["strategy", "task", *REGULARIZERS.names()], default="strategy")
    budget_seconds = parse_budget(budget)
    if strategy is not None and budget_seconds is not None:
        raise ConfigError(f"--budget {budget} is for the automatic default; --strategy {strategy} was given")
    if strategy is None and settings.get("strategy"):
        raise ConfigError(f"--param {', '.join(settings['strategy'])}: settings of a strategy need --strategy")
    if checkpointing.resume and _finished_before_cleanup(out):
        remove_checkpoints(checkpoint_folder(out))
        typer.echo(f"{out} is complete (the fit ended before its checkpoints were removed); removed them")
        return
    refuse_existing(out, checkpointing.overwrite, "run directory", inputs=(data, val))
    checkpoints = checkpointing.folder(out)
    if task is not None:
        TASKS.get(task)  # an unknown name fails before the data are read
    task = task or task_for_file(data)
    samples = _read(data, task, reading, modality)
    merged = _merge_repeated(data, samples) if task in (None, "multilabel") else samples
    task = task or infer_task(samples.labels or [], str(data), repeated_files=len(merged) < len(samples))
    if task == "multilabel":
        samples = merged
    chosen["task"] = task
    strategy, batch_size, epochs, lr, layer_decay = _task_defaults(chosen, automatic=budget_seconds is not None)
    eval_set = None
    if val is not None:
        val_samples = _read(val, task, reading, samples.modality)
        eval_set = (_merge_repeated(val, val_samples) if task == "multilabel" else val_samples, None)
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"fitting {name if backbone or strategy else 'a chosen backbone'} ({strategy or 'chosen'}, {task}) "
               f"on {len(samples)} {samples.modality} samples", err=True)
    clf = TransferEstimator(backbone=name, strategy=strategy, task=task, pretrained=not from_scratch,
                             backbone_options=size.backbone_options(), epochs=epochs, lr=lr, batch_size=batch_size,
                             layer_decay=layer_decay, val_fraction=val_fraction, seed=seed,
                             strategy_params=settings.pop("strategy", None), task_params=settings.pop("task", None),
                             regularizers=tuple(regularizer or ()),
                             regularizer_params=settings or None, checkpoint_dir=str(checkpoints),
                             checkpoint_every=checkpointing.checkpoint_every, mixed_precision=mixed_precision)
    choice = None
    if strategy is None:
        from transferkit.auto.choose import auto_fit

        clf, choice = auto_fit(clf, samples, budget=budget_seconds, choose_backbone=not backbone,
                               eval_set=None if eval_set is None else eval_set[0], resume=checkpointing.resume,
                               keep_checkpoints=True)
        name, chosen["strategy"] = clf.backbone, clf.strategy
        chosen["lr"], chosen["epochs"] = clf.lr, clf.epochs
    else:
        clf.fit(samples, eval_set=eval_set, resume=checkpointing.resume, keep_checkpoints=True)
    if not is_main_process():  # under `accelerate launch` the main process alone writes the run
        return
    written = clf.save(out, overwrite=checkpointing.overwrite)
    write_run_config(written / RUN_CONFIG, {**chosen, "backbone": name, "task": task},
                     clf.strategy_info_["settings"])
    if choice is not None:
        from transferkit.auto.choose import write_choices

        write_choices(written, choice)
        typer.echo("chose: " + "; ".join(choice.reasons), err=True)
    remove_checkpoints(checkpoints)
    typer.echo(f"fitted in {clf.fit_seconds_:.1f}s; wrote {written}")
    if clf.validation_metrics_ is not None:
        typer.echo(clf.task_.format_metrics(clf.validation_metrics_))
    recording.write_report(lambda: fit_report(clf, written))
    recording.log("fit", params={**chosen, "data": str(data), "backbone": name, "task": task},
                  metrics=run_metrics(clf, written), history=clf.history_, folder=written)


def _finished_before_cleanup(out: Path) -> bool:
    """OUT is a run directory written after the last checkpoint in OUT.checkpoints/: the fit finished and was
    stopped only before it removed its checkpoints."""
    from transferkit.artifact import MANIFEST
    from transferkit.checkpoint import LATEST, checkpoint_folder
    from transferkit.safety import RUN_DIRECTORY, artifact_kind

    latest = checkpoint_folder(out) / LATEST
    if artifact_kind(out) != RUN_DIRECTORY or not latest.is_file():
        return False
    return (out / MANIFEST).stat().st_mtime >= latest.stat().st_mtime


def _read(data: Path, task: str | None, reading: Reading, modality: str | None) -> Samples:
    """DATA in the task's own format (tagged words for ner), or by the generic readers."""
    from transferkit.tasks import make_task

    own = make_task(task).read_data(data) if task is not None else None
    return own if own is not None else reading.read(data, modality)


def _merge_repeated(data: Path, samples: Samples) -> Samples:
    """A media folder's samples with each file held in several class folders as one multi-label sample."""
    from transferkit.data.folders import merge_repeated_files

    return merge_repeated_files(samples) if data.is_dir() and samples.modality != "text" else samples


def evaluate(
    run: RunArg,
    data: DataArg,
    as_json: JsonOpt = False,
    name: Annotated[str, typer.Option(help="name of the evaluation in RUN/evaluations/NAME.json")] = "",
    *,
    reading: Reading,
) -> None:
    """Evaluate a run on labelled DATA with its task's metrics (classification: accuracy, macro-F1,
    per-class precision/recall, confusion matrix; multilabel: micro/macro-F1, subset accuracy, Hamming
    loss, per-label precision/recall; regression: MSE, MAE, R²).

    The metrics are also written to RUN/evaluations/NAME.json (NAME defaults to DATA's file name).
    """
    from transferkit.estimator import load
    from transferkit.safety import file_in, write_json

    short_warnings()
    target = file_in(run / "evaluations", f"{name or data.stem or 'data'}.json", what="--name")
    clf = load(run)
    samples = _read(data, clf.task_.name, reading, clf.modality_)
    if clf.task_.name == "multilabel":
        samples = _merge_repeated(data, samples)
    metrics = clf.evaluate(samples)
    target.parent.mkdir(exist_ok=True)
    write_json(target, {"data": str(data), **metrics})
    typer.echo(json.dumps(metrics, indent=2) if as_json else clf.task_.format_metrics(metrics))


def _task_defaults(chosen: dict[str, Any], *, automatic: bool) -> tuple[str | None, int, int | None, float | None,
                                                                         float | None]:
    """Fill the fit options left unset: with no strategy and no budget (``automatic``), from the task's
    own default (``tasks.base.default_fit_settings``; None stays None, the automatic choice); a batch size
    of 32 otherwise. Updates ``chosen`` (what ``config.toml`` records) and returns ``strategy,
    batch_size, epochs, lr, layer_decay``."""
    from transferkit.tasks.base import default_fit_settings

    recipe = default_fit_settings(chosen["task"]) if chosen["strategy"] is None and not automatic else {}
    keys = ("strategy", "batch_size", "epochs", "lr", "layer_decay")
    for key in keys:
        if chosen[key] is None:
            chosen[key] = recipe.get(key)
    if chosen["batch_size"] is None:
        chosen["batch_size"] = 32
    return tuple(chosen[key] for key in keys)  # type: ignore[return-value]


def predict(
    run: RunArg,
    inputs: Annotated[list[str], typer.Argument(help="image/audio files or folders, or texts (or .txt files, "
                                                     "one text per line)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON line per input, in order (a ner run: "
                                                        "the list of its entities)")] = False,
    top_k: Annotated[int, typer.Option(help="probabilities shown per input", **option_range("top_k"))] = 3,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="stream the predictions into this CSV file "
                                             "(input,prediction,record), resuming where it stops")] = None,
    workers: Annotated[int, typer.Option(help="with --out: processes that decode inputs", min=0, max=64)] = 2,
    batch_size: BatchSizeOpt = 32,
    engine: Annotated[str, typer.Option(help="what runs the model: torch, or onnx / onnx-int8 (its export, "
                                             "`transferkit export`)")] = "torch",
    draw: Annotated[Path | None, typer.Option(help="folder to write each input image into with its predicted "
                                                   "boxes drawn (detection runs)")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="generation runs: tokens to generate at most "
                                                       "(default: the run's, 64)", min=1)] = None,
    temperature: Annotated[float | None, typer.Option(help="generation runs: sampling temperature (default 0: "
                                                      "greedy)", min=0.0)] = None,
) -> None:
    """Predict for INPUTS with a fitted run: a label and its probabilities, the labels of a multi-label
    run, a regression run's number, a ner run's entities with their character spans, a detection run's
    boxes, or a generation run's completion of each prompt (one tab-separated line, or a JSON line, per input;
    --draw writes the images with their boxes). A JSON line is an object naming its input, except for ner
    runs: the input's entities as a list of {text, start, end, label, score}, with text = input[start:end].

    With --out the inputs (folders of any size, tables) are streamed: listed lazily, decoded by --workers
    processes, and appended to the CSV batch by batch, with a progress bar. Run the same command again after
    an interruption: rows already written are skipped. Unreadable files are listed in OUT.skipped.csv."""
    from transferkit.data import read_inputs
    from transferkit.export import load_engine

    short_warnings()
    if out is not None:
        from transferkit.errors import ConfigError
        from transferkit.estimator import load
        from transferkit.stream import list_inputs, predict_to_csv

        if engine != "torch":
            raise ConfigError(f"predict --out streams on the torch engine; --engine {engine} predicts without --out")
        clf = load(run)
        clf.progress = False
        if max_new_tokens is not None or temperature is not None:
            clf.task_.set_generation(max_new_tokens=max_new_tokens, temperature=temperature)
        done = predict_to_csv(clf.model_, clf.task_, list_inputs(inputs, clf.modality_), out, batch_size=batch_size,
                              workers=workers, top_k=top_k)
        typer.echo(f"wrote {done.written} rows to {out} ({done.resumed} from before, {done.skipped} unreadable "
                   "skipped)", err=True)
        return
    loaded = load_engine(run, engine)
    if max_new_tokens is not None or temperature is not None:
        loaded.task.set_generation(max_new_tokens=max_new_tokens, temperature=temperature)
    samples = read_inputs(inputs, loaded.modality)
    if draw is not None:
        from transferkit.safety import artifact_folder

        loaded.task.draw(samples.items[0], None)  # a task that draws nothing fails before predicting
        artifact_folder(draw, "drawings")
    scored = loaded.predict_scores(samples, batch_size=batch_size)
    for item, origin, scores in zip(samples.items, samples.origins, scored, strict=True):
        if draw is not None:
            from transferkit.safety import atomic_write

            drawn = loaded.task.draw(item, scores)
            atomic_write(draw / f"{Path(origin).stem}.png", lambda tmp, image=drawn: image.save(tmp, format="PNG"))
        record = loaded.task.record(scores, top_k=top_k)
        typer.echo(json.dumps(loaded.task.json_line(origin, record)) if as_json
                   else "\t".join([origin, *loaded.task.table_row(record)]))
