"""``adapt``: labelled source data + unlabelled target data -> target predictions, metrics and a report.

The target is read without its labels. Labelled target data given separately (``target_eval``)
is used only for the report: accuracy before and after, per class, and the oracle choice of
hyperparameters next to the label-free one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.adapt.base import DA_METHODS
from transferkit.adapt.feature_methods import AlignedClassifier, AveragedClassifier, domain_standardiser
from transferkit.adapt.search import SearchOutcome, search_features
from transferkit.checkpoint import remove_checkpoints
from transferkit.data import Samples, read_dataset
from transferkit.errors import ConfigError, DataError
from transferkit.evaluate import classification_metrics
from transferkit.heads import set_linear_head
from transferkit.model import build_model, features_and_outputs, run_manifest
from transferkit.safety import check_output, write_json
from transferkit.tasks import Classification

BASELINE = "source_only"


@dataclass
class AdaptData:
    """Source (labelled), target (labels dropped) and optional labelled target for the report."""

    source: Samples
    target: Samples
    target_eval: Samples | None = None
    names: dict[str, str] = field(default_factory=dict)


def read_adapt_data(source: str | os.PathLike[str] | Samples, target: str | os.PathLike[str] | Samples,
                    target_eval: str | os.PathLike[str] | Samples | None = None, *, modality: str | None = None,
                    **read_options: Any) -> AdaptData:
    """Read and check the three datasets of an adaptation run.

    Raises:
        DataError: source labels missing, a target with no samples, domains of different
            modalities, or ``target_eval`` classes the source does not have.
    """
    def read(what: Any, require_labels: bool, kind: str | None) -> Samples:
        if isinstance(what, Samples):
            return what
        return read_dataset(what, modality=kind, require_labels=require_labels, **read_options)

    src = read(source, True, modality)
    if src.labels is None:
        raise DataError(f"the source {source} has no labels; adaptation needs labelled source data")
    tgt = read(target, False, None)
    if len(tgt) == 0:
        raise DataError(f"the target {target} has no samples")
    if tgt.modality != src.modality:
        raise DataError(f"the source {source} is {src.modality} but the target {target} is {tgt.modality}; "
                        "both domains must be the same kind of data")
    tgt = Samples(items=tgt.items, labels=None, modality=tgt.modality, origins=tgt.origins)  # never adapt on labels
    evl = None
    if target_eval is not None:
        evl = read(target_eval, True, src.modality)
        if evl.modality != src.modality:
            raise DataError(f"--target-eval {target_eval} is {evl.modality} but the source is {src.modality}")
        absent = sorted(set(evl.classes) - set(src.classes))
        if absent:
            raise DataError(f"target classes {absent} in {target_eval} are absent from the source {source} "
                            f"(source classes: {src.classes})")
    names = {"source": str(source if not isinstance(source, Samples) else "arrays"),
             "target": str(target if not isinstance(target, Samples) else "arrays"),
             "target_eval": str(target_eval) if target_eval is not None else ""}
    return AdaptData(src, tgt, evl, names)


def adapt(source: str | os.PathLike[str] | Samples, target: str | os.PathLike[str] | Samples, *,
          method: str | None = None, backbone: str = "", budget: float | None = None,
          out: str | os.PathLike[str] | None = None,
          target_eval: str | os.PathLike[str] | Samples | None = None, selection: str = "dev",
          params: dict[str, Any] | None = None, seed: int = 0, batch_size: int = 32,
          backbone_options: dict[str, Any] | None = None, deep_options: dict[str, Any] | None = None,
          modality: str | None = None, progress: bool = True, overwrite: bool = False,
          log: Callable[[str], None] | None = None, **read_options: Any) -> dict[str, Any]:
    """Adapt from labelled ``source`` to unlabelled ``target`` with a registered method; write a report.

    Feature-level methods run on the backbone's cached features, with hyperparameters chosen from
    the method's grid by a label-free ``selection`` criterion; deep methods train the backbone and a
    head (``transferkit.adapt.deep``).

    Args:
        source: labelled data (folder, table, ``.review`` folder or ``Samples``).
        target: target-domain data; any labels it has are dropped.
        method: a registered method (``transferkit list adaptation-method``); None chooses between the
            feature-level and the deep family without target labels (``transferkit.auto.adapt``).
        budget: with ``method=None``, the seconds the adaptation may take; the deep family is chosen only
            when source-only looks hopeless and its estimated cost fits (None: never).
        backbone: backbone name; default the zoo backbone of the data's modality.
        out: folder to write (``adapt.json``, ``predictions.csv``, ``embedding.png``,
            ``report.html``, and the adapted model as the run directory ``model/`` for
            ``transferkit.load`` / ``transferkit predict``), atomically; None writes nothing.
        target_eval: labelled target data, used only for the report.
        selection: label-free criterion (``dev``, ``iwv``, ``snd``, ``source_val``).
        params: hyperparameters to fix; the rest of the grid is searched.
        deep_options: fields of the deep methods' ``DeepAdaptConfig`` (epochs, lr, ...); with
            ``checkpoint_dir`` a deep run checkpoints there, ``resume=True`` continues an interrupted one,
            and the checkpoints are removed once the run succeeded (and ``out`` is written). Feature-level
            methods, which are fast, ignore them.
        log: called with progress lines (e.g. ``print``); None for silence.
        **read_options: passed to ``read_dataset`` (text_column, label_column, on_error, ...).

    Returns:
        The summary written to ``adapt.json``.

    Raises:
        DataError, ConfigError, BackboneError: bad data, an unknown method/criterion/backbone.
        ArtifactError: ``out`` exists and ``overwrite`` is false.

    Example:
        >>> adapt("books/", "electronics/", method="cbst", target_eval="electronics/", out="runs/b2e")
    """
    say = log or (lambda _line: None)
    if method is not None:
        DA_METHODS.get(method).settings(params)  # an unknown hyperparameter or a bad value fails before any work
    elif params:
        raise ConfigError(f"settings {', '.join(params)} need --method: the automatic choice sets its own")
    if out is not None:  # before any work: an existing output must be a transferkit one, and writable
        check_output(out, overwrite=overwrite, what="adaptation output",
                     inputs=tuple(p for p in (source, target, target_eval) if not isinstance(p, Samples)))
    data = read_adapt_data(source, target, target_eval, modality=modality, **read_options)
    from transferkit.backbones import create_backbone
    from transferkit.backbones.zoo import DEFAULT_BACKBONE

    name = backbone or DEFAULT_BACKBONE[data.source.modality]
    model = create_backbone(name, **(backbone_options or {}))
    classes = data.source.classes
    start = time.perf_counter()
    choice = None
    if method is None:
        choice = _choose(model, data, budget, seed, batch_size, deep_options or {}, progress)
        method = choice.method
        say("chose " + method + ": " + " ".join(choice.reasons))
    method_entry = DA_METHODS.get(method)
    if method_entry.level == "deep":
        summary, target_probs, plot_panels, adapted = _adapt_deep(model, data, classes, method, params or {}, seed,
                                                                  batch_size, deep_options or {}, progress)
    else:
        summary, target_probs, plot_panels, adapted = _adapt_features(model, data, classes, method, selection,
                                                                      params or {}, seed, batch_size, progress, say)
    summary = {"method": method, "level": method_entry.level, "backbone": name, **data.names,
               "n_source": len(data.source), "n_target": len(data.target), "classes": classes,
               "seconds": round(time.perf_counter() - start, 2), **summary}
    if choice is not None:
        summary["choice"] = choice.to_dict()
    if out is not None:
        manifest = run_manifest(
            Classification(classes), modality=data.source.modality, strategy=f"adapt:{method}",
            estimator_params={"backbone": name, "backbone_options": backbone_options, "seed": seed,
                              "batch_size": batch_size},
            strategy_info={"adapt": {k: summary[k] for k in ("method", "level", "source", "target")}},
            fit_seconds=summary["seconds"])
        _write_outputs(Path(out), summary, data.target, classes, target_probs, plot_panels,
                       np.array([classes.index(label) for label in data.source.labels or []]),
                       model=(adapted, manifest, method_entry.level == "deep"))
    if method_entry.level == "deep" and (deep_options or {}).get("checkpoint_dir"):
        remove_checkpoints((deep_options or {})["checkpoint_dir"])
    return summary


def _choose(backbone: Any, data: AdaptData, budget: float | None, seed: int, batch_size: int,
            deep_options: dict[str, Any], progress: bool) -> Any:
    """The automatic default's method (``transferkit.auto.adapt``), from the cached frozen features."""
    from transferkit.adapt.deep import DeepAdaptConfig
    from transferkit.auto.adapt import choose_method, deep_cost_estimate

    start = time.perf_counter()
    fs, ft = _features(backbone, data.source, batch_size, progress), _features(backbone, data.target, batch_size,
                                                                                 progress)
    ys = np.array([data.source.classes.index(label) for label in data.source.labels or []])
    epochs = int(deep_options.get("epochs") or DeepAdaptConfig.epochs)
    left = None if budget is None else budget - (time.perf_counter() - start)
    return choose_method(fs, ys, ft, budget=left, seed=seed,
                         deep_cost=lambda: deep_cost_estimate(backbone, data.source, data.target, epochs=epochs,
                                                              batch_size=batch_size))


def _features(backbone: Any, samples: Samples, batch_size: int, progress: bool) -> np.ndarray:
    from transferkit.features import extract_features

    return extract_features(backbone, samples, batch_size=batch_size, progress=progress).astype(np.float64)


def _adapt_features(backbone: Any, data: AdaptData, classes: list[str], method: str, selection: str,
                    params: dict[str, Any], seed: int, batch_size: int, progress: bool, say: Callable[[str], None]
                    ) -> tuple[dict[str, Any], np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], Any]:
    fs = _features(backbone, data.source, batch_size, progress)
    ft = _features(backbone, data.target, batch_size, progress)
    ys = np.array([classes.index(label) for label in data.source.labels or []])
    oracle_eval = None
    if data.target_eval is not None:
        fe = _features(backbone, data.target_eval, batch_size, progress)
        oracle_eval = (fe, np.array([classes.index(label) for label in data.target_eval.labels or []]))
    runs: dict[str, SearchOutcome] = {}
    for name in dict.fromkeys([BASELINE, method]):
        runs[name] = search_features(DA_METHODS.get(name), fs, ys, ft, criterion=selection,
                                     fixed=params if name == method else None, seed=seed, oracle_eval=oracle_eval,
                                     progress=say)
    chosen = runs[method]
    summary: dict[str, Any] = {"selection": chosen.result.to_dict(),
                               "baseline_selection": runs[BASELINE].result.to_dict()}
    if oracle_eval is not None:
        accuracy: dict[str, dict[str, float]] = {}
        per_class: dict[str, Any] = {}
        models: dict[str, AlignedClassifier | AveragedClassifier] = {f"{BASELINE} (before)": runs[BASELINE].model,
                                                f"{method} (after, label-free choice)": chosen.model}
        if chosen.oracle_model is not None:
            models[f"{method} (oracle choice, uses target labels)"] = chosen.oracle_model
        for label, model in models.items():
            run = runs[BASELINE] if label.startswith(f"{BASELINE} (") else chosen
            picked = run.result.oracle_params if "oracle" in label else run.result.params
            source_val = next(c.scores["source_val"] for c in run.result.candidates if c.params == picked)
            predicted = model.predict_proba(oracle_eval[0]).argmax(axis=1)
            metrics = classification_metrics([classes[i] for i in oracle_eval[1]], [classes[i] for i in predicted],
                                             classes)
            accuracy[label] = {"source_val": source_val, "target": metrics["accuracy"]}
            per_class[label] = metrics["per_class"]
        summary.update(accuracy=accuracy, per_class=per_class)
    before = domain_standardiser(fs)
    panels = {"before adaptation (raw features)": (before(fs), before(ft)),
              f"after {method} (classifier's input space)": (chosen.model.source_features,
                                                             chosen.model.transform(ft))}
    # the fitted model is affine + logistic regression: it folds into a linear head on the frozen backbone
    adapted = build_model(backbone, Classification(classes))
    set_linear_head(adapted.head, *chosen.model.as_linear())
    return summary, chosen.model.predict_proba(ft), panels, adapted.eval()


def _adapt_deep(backbone: Any, data: AdaptData, classes: list[str], method: str, params: dict[str, Any], seed: int,
                batch_size: int, deep_options: dict[str, Any], progress: bool
                ) -> tuple[dict[str, Any], np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], Any]:
    from transferkit.adapt import deep  # the deep methods; imported only when one is asked for

    fs_before = _features(backbone, data.source, batch_size, progress)
    ft_before = _features(backbone, data.target, batch_size, progress)
    # the new head, and then a method's own modules (a discriminator), start the same for a seed in any process
    torch.manual_seed(seed)
    task = Classification(classes)
    model = build_model(backbone, task)
    # labelled target samples, if given, are only scored each epoch for the report (the oracle column)
    config = deep.DeepAdaptConfig(seed=seed, batch_size=batch_size, progress=progress, oracle=data.target_eval,
                                  **deep_options)
    outcome = deep.adapt_model(model, data.source, data.target, classes, method, config, params)
    model.eval()

    def probs(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
        feats, outputs = features_and_outputs(model, samples, batch_size=batch_size, use_cache=False,
                                              progress=progress)
        return task.decode(outputs), feats.astype(np.float64)

    target_probs, ft_after = probs(data.target)
    _, fs_after = probs(data.source)
    summary: dict[str, Any] = {"history": outcome.history, "info": outcome.info}
    if data.target_eval is not None:
        eval_probs, _ = probs(data.target_eval)
        metrics = classification_metrics(data.target_eval.labels or [], [classes[i] for i in eval_probs.argmax(1)],
                                         classes)
        summary.update(accuracy={f"{method} (after)": {"target": metrics["accuracy"]}},
                       per_class={f"{method} (after)": metrics["per_class"]})
    panels = {"before adaptation": (fs_before, ft_before), f"after {method}": (fs_after, ft_after)}
    return summary, target_probs, panels, model


def _write_outputs(out: Path, summary: dict[str, Any], target: Samples, classes: list[str], target_probs: np.ndarray,
                   panels: dict[str, tuple[np.ndarray, np.ndarray]], source_labels: np.ndarray, *,
                   model: tuple[Any, dict[str, Any], bool]) -> None:
    """Write the output folder via a staging folder and a rename, so a failure leaves nothing half-written.

    ``model`` is (adapted ``TransferModel``, manifest, backbone trained): saved as the run directory
    ``out/model`` that ``transferkit.load`` and ``transferkit predict`` read.
    """
    from transferkit.artifact import save_run
    from transferkit.report import embedding_plot, write_adaptation_report
    from transferkit.safety import staged_directory, write_csv

    adapted, manifest, backbone_trained = model
    with staged_directory(out, overwrite=True, what="adaptation output") as staging:
        save_run(staging / "model", adapted, manifest, backbone_trained=backbone_trained)
        write_json(staging / "adapt.json", summary)
        if "choice" in summary:  # what the automatic default chose and why, for the report
            write_json(staging / "choices.json", summary["choice"])
        write_csv(staging / "predictions.csv", ["origin", "label", "confidence"],
                  ([origin, classes[int(row.argmax())], f"{row.max():.4f}"]
                   for origin, row in zip(target.origins, target_probs, strict=True)))
        embedding_plot(staging / "embedding.png", panels, source_labels=source_labels)
        write_adaptation_report(staging, summary, "embedding.png")
