"""``zeroshot`` and ``cluster``: classifying and grouping data without labelled examples."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from transferkit.backbones.zoo import DEFAULT_BACKBONE
from transferkit.cli.options import (
    BackboneOpt,
    DataArg,
    InputSize,
    JsonOpt,
    LabelColOpt,
    MaxLengthOpt,
    ModalityOpt,
    OnError,
    OnErrorOpt,
    OverwriteOpt,
    Reading,
    SeedOpt,
    TextColOpt,
    refuse_existing,
    short_warnings,
)
from transferkit.cli.recording import Recording
from transferkit.errors import ConfigError, DataError
from transferkit.params import option_range


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
    self_train: Annotated[int, typer.Option(help="rounds of self-training on confident predictions (0: none)",
                                            **option_range("self_train"))]
    = 0,
    strategy: Annotated[str, typer.Option(help="how self-training fits its pseudo-labels: linear_probe, finetune, "
                                                 "...")] = "linear_probe",
    backbone: Annotated[str, typer.Option(help="a text backbone")] = "minilm",
    max_length: MaxLengthOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for predictions.csv, summary.json and, "
                                                                 "with --self-train, the model's run directory")]
    = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
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
    from transferkit.evaluate import classification_metrics, format_metrics
    from transferkit.unsupervised.self_training import SelfTrainingClassifier
    from transferkit.unsupervised.zero_shot import DEFAULT_TEMPLATES, ZeroShotClassifier

    short_warnings()
    names = _split_labels(labels)
    descriptions = _descriptions(describe, names)
    refuse_existing(out, overwrite, inputs=(data,))
    reading = Reading(text_column=text_column, label_column=label_column, on_error=on_error)
    samples = reading.read(data, require_labels=False)
    if samples.modality != "text":
        raise ConfigError(f"zeroshot classifies texts, but {data} holds {samples.modality} data "
                          "(`transferkit cluster` groups images and audio without labels)")
    if samples.labels is not None:
        unknown = sorted(set(samples.labels) - set(names))
        if unknown:
            raise DataError(f"labels {unknown} of {data} are not among --labels {','.join(names)}; list the "
                            "data's label names and give the words to embed with --describe, e.g. "
                            "--labels 0,1 --describe 0=negative --describe 1=positive")
    starter = ZeroShotClassifier(names, backbone=backbone, descriptions=descriptions or None,
                                 templates=tuple(template or DEFAULT_TEMPLATES), centre=centre,
                                 backbone_options=InputSize(max_length=max_length).backbone_options(), progress=True)
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
    from transferkit.safety import staged_directory, write_csv, write_json

    labelled = samples.labels is not None
    with staged_directory(out, overwrite=overwrite) as staging:
        write_csv(staging / "predictions.csv", ["item", *predictions, *(["label"] if labelled else [])],
                  ([origin, *(values[i] for values in predictions.values()), *([samples.labels[i]] if labelled else [])]
                   for i, origin in enumerate(samples.origins)))
        if model is not None:
            model.classifier_.save(staging / "model")
            summary = {**summary, "model": "model/ (load with `transferkit predict`)"}
        write_json(staging / "summary.json", summary)


class MapMethod(StrEnum):
    tsne = "tsne"
    pca = "pca"
    none = "none"


def cluster(
    data: DataArg,
    k: Annotated[int | None, typer.Option("--k", help="number of clusters (default: chosen by silhouette)",
                                          **option_range("k"))] = None,
    k_min: Annotated[int, typer.Option(help="smallest k tried when --k is not given", **option_range("k_min"))] = 2,
    k_max: Annotated[int, typer.Option(help="largest k tried when --k is not given", **option_range("k_max"))] = 10,
    backbone: BackboneOpt = "",
    pca_dims: Annotated[int, typer.Option(help="principal components kept before k-means (0: no PCA)",
                                          **option_range("pca_dims"))] = 50,
    map_method: Annotated[MapMethod, typer.Option("--map", help="2-D map written to OUT/map.png")] = MapMethod.tsne,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for assignments.csv/.json, summary.json "
                                                                 "and map.png")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    modality: ModalityOpt = None,
    seed: SeedOpt = 0,
    *,
    size: InputSize,
    reading: Reading,
    recording: Recording,
) -> None:
    """Group the samples of DATA by k-means on pretrained features, without labels.

    Labels in DATA (class subfolders, a label column), if any, are used only to score the clusters
    (NMI, ARI, matched accuracy).
    """
    import numpy as np

    from transferkit.report.clustering import write_cluster_report
    from transferkit.unsupervised.clustering import (
        FeatureClusterer,
        check_k,
        clustering_scores,
        map_2d,
        write_clustering,
    )

    short_warnings()
    refuse_existing(out, overwrite, inputs=(data,))
    samples = reading.read(data, modality, require_labels=False)
    if k is not None:
        check_k(k, len(samples))
    name = backbone or DEFAULT_BACKBONE[samples.modality]
    typer.echo(f"clustering {len(samples)} {samples.modality} samples on {name} features", err=True)
    clusterer = FeatureClusterer(name, k=k, k_min=k_min, k_max=k_max, pca_dims=pca_dims or None,
                                 backbone_options=size.backbone_options(), seed=seed, progress=True).fit(samples)
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
        recording.write_report(lambda: write_cluster_report(out, summary))
    recording.log("cluster", params={"data": str(data), "backbone": name, "k": k, "k_min": k_min, "k_max": k_max,
                                     "pca_dims": pca_dims, "seed": seed},
                  metrics={"k": clusterer.k_, "silhouette": summary["silhouette"], **summary.get("scores", {})},
                  folder=out)
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
