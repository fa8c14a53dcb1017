"""Each task's part of a run's report, registered in ``REPORT_VIEWS`` under the task's name.

A view decides what the run directory keeps of each held-out prediction (``rows``, JSON, bounded by the
caller), which predictions are the worst (``worst``), what to say of each worst example (``example``), the
names to colour the feature map by (``map_labels``) and, from the stored rows alone, the page's sections
(``sections``). A new task adds its view by subclassing ``ReportView`` and registering it; a task without a
view gets ``ReportView``'s, which shows the metrics the task reports.

Example:
    >>> @REPORT_VIEWS.register("detection", description="drawn boxes, AP per class")
    ... class DetectionView(ReportView): ...
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.registry import Registry
from transferkit.report import charts
from transferkit.report.page import Figures, Section, examples_html, table

if TYPE_CHECKING:
    from transferkit.data import Samples
    from transferkit.tasks.base import Task


class ReportView:
    """The report of a task without its own view: no per-row evidence beyond the samples' labels."""

    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        """What the run keeps of each held-out prediction (JSON)."""
        return {"metrics": task.metrics(samples.labels or [], scores) if samples.labels else None}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        """Indices of the worst-predicted rows, worst first."""
        return []

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        """What the page says of one worst example, besides its origin and media (JSON)."""
        return {}

    def map_labels(self, samples: Samples) -> list[str]:
        """Per sample, the name the 2-D feature map colours it by; empty: the map shows no classes."""
        return [str(label) for label in samples.labels] if samples.labels else []

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        """The view's sections of the page, drawn from the stored rows alone."""
        metrics = rows.get("metrics") or {}
        flat = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
        return [Section("Held-out metrics", table(flat, ["metric", "value"]))] if flat else []


@dataclass(frozen=True)
class ViewEntry:
    name: str
    target: type[ReportView]
    description: str


def _make_entry(name: str, target: type[ReportView], *, description: str) -> ViewEntry:
    return ViewEntry(name, target, description)


REPORT_VIEWS: Registry[ViewEntry] = Registry("report view", _make_entry, hint="see `transferkit list report-view`")


def view_for(task: str) -> ReportView:
    """The registered view of ``task``, or the generic one."""
    return REPORT_VIEWS.get(task).target() if task in REPORT_VIEWS else ReportView()


def _worst_card(example: dict[str, Any]) -> str:
    return (f"<div>true <b>{html.escape(str(example.get('true')))}</b>, predicted "
            f"<b>{html.escape(str(example.get('predicted')))}</b>"
            + (f" ({example['confidence']:.2f})" if "confidence" in example else "") + "</div>")


@REPORT_VIEWS.register("classification", description="confusion matrix, per-class precision/recall, "
                       "reliability diagram and ECE, the most confidently wrong examples")
class ClassificationView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        return {"classes": list(task.names), "labels": list(samples.labels or []),
                "probs": np.round(np.asarray(scores, dtype=float), 4).tolist()}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        true = np.asarray(task.encode(samples.labels or []))
        return np.argsort(scores[np.arange(len(true)), true], kind="stable").tolist()

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        best = int(np.argmax(scores[index]))
        return {"true": samples.labels[index] if samples.labels else None, "predicted": task.names[best],
                "confidence": float(scores[index, best])}

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        from transferkit.evaluate import classification_metrics

        classes, probs = rows["classes"], np.asarray(rows["probs"], dtype=float)
        predicted = [classes[i] for i in probs.argmax(axis=1)]
        metrics = classification_metrics(rows["labels"], predicted, classes)
        per_class = metrics["per_class"]
        summary = (f"<p>accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on "
                   f"{metrics['n']} samples</p>")
        out = [Section("Confusion matrix", summary + figures.draw(
            "confusion_matrix", charts.confusion, metrics["confusion_matrix"]["matrix"], classes,
            caption="confusion matrix (rows: true class, shares of the row; numbers: counts)"))]
        out.append(Section("Per-class precision and recall", figures.draw(
            "per_class", charts.precision_recall_bars, per_class, caption="precision and recall per class")
            + table([[n, r["precision"], r["recall"], r["f1"], r["support"]] for n, r in per_class.items()],
                    ["class", "precision", "recall", "F1", "support"])))
        true = np.array([classes.index(label) for label in rows["labels"]])
        calibration = charts.calibration_bins(probs.max(axis=1), probs.argmax(axis=1) == true)
        out.append(Section("Calibration", f"<p>expected calibration error (10 equal-width bins): "
                                          f"<b>{calibration['ece']:.4f}</b></p>"
                           + figures.draw("reliability", charts.reliability, calibration,
                                          caption="reliability diagram")))
        if examples:
            out.append(Section("Worst-predicted examples", "<p class='note'>lowest probability of the true class "
                               "first</p>" + examples_html(examples, _worst_card)))
        return out


@REPORT_VIEWS.register("multilabel", description="per-label precision/recall, the samples with most wrong labels")
class MultilabelView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        return {"metrics": task.metrics(samples.labels or [], scores), "labels": list(samples.labels or []),
                "predicted": ["|".join(p) for p in task.predictions(scores)]}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        wrong = [len(set(t.split("|")) ^ set(p.split("|")) - {""}) for t, p in zip(rows["labels"], rows["predicted"],
                                                                                 strict=True)]
        return [int(i) for i in np.argsort(wrong, kind="stable")[::-1] if wrong[i] > 0]

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        return {"true": rows["labels"][index], "predicted": rows["predicted"][index]}

    def map_labels(self, samples: Samples) -> list[str]:
        return []

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        metrics, per_label = rows["metrics"], rows["metrics"]["per_label"]
        out = [Section("Per-label precision and recall",
                       f"<p>micro-F1 {metrics['micro_f1']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, subset accuracy "
                       f"{metrics['subset_accuracy']:.4f}</p>"
                       + figures.draw("per_label", charts.precision_recall_bars, per_label,
                                      caption="precision and recall per label"))]
        if examples:
            out.append(Section("Worst-predicted examples", examples_html(examples, _worst_card)))
        return out


@REPORT_VIEWS.register("regression", description="prediction against target, the largest errors")
class RegressionView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        return {"metrics": task.metrics(samples.labels or [], scores),
                "true": [float(v) for v in samples.labels or []], "predicted": np.asarray(scores, float).tolist()}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        error = np.abs(np.asarray(rows["true"]) - np.asarray(rows["predicted"]))
        return np.argsort(error, kind="stable")[::-1].tolist()

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        return {"true": f"{rows['true'][index]:.4g}", "predicted": f"{rows['predicted'][index]:.4g}"}

    def map_labels(self, samples: Samples) -> list[str]:
        return []

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        out = super().sections(rows, examples, figures)
        out.append(Section("Predictions against targets", figures.draw(
            "predicted_vs_true", charts.predicted_vs_true, rows["true"], rows["predicted"],
            caption="prediction against target")))
        if examples:
            out.append(Section("Largest errors", examples_html(examples, _worst_card)))
        return out


def _entity_text(entities: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"{e['text']} ({e['label']})" for e in entities) or "none"


@REPORT_VIEWS.register("ner", description="entity table (precision/recall/F1 per type), sentences with most "
                       "wrong tags")
class NerView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        from transferkit.data.tagged import split_tags

        metrics = task.metrics(samples.labels or [], scores)
        wrong = [int(sum(t != p for t, p in zip(split_tags(label), task.tags_of(s), strict=True)))
                 for label, s in zip(samples.labels or [], scores, strict=True)]
        return {"metrics": metrics, "wrong_tags": wrong}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        wrong = rows["wrong_tags"]
        return [int(i) for i in np.argsort(wrong, kind="stable")[::-1] if wrong[i] > 0]

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        from seqeval.metrics.sequence_labeling import get_entities

        from transferkit.data.tagged import split_tags

        words = samples.items[index].words
        true = [{"text": " ".join(words[s:e + 1]), "label": kind}
                for kind, s, e in get_entities(split_tags(samples.labels[index]))] if samples.labels else []
        return {"true": _entity_text(true), "predicted": _entity_text(task.entities(scores[index])),
                "wrong_tags": rows["wrong_tags"][index]}

    def map_labels(self, samples: Samples) -> list[str]:
        return []

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        metrics = rows["metrics"]
        per_type = metrics.get("per_type", {})
        body = (f"<p>entity F1 {metrics['f1']:.4f} (precision {metrics['precision']:.4f}, recall "
                f"{metrics['recall']:.4f}) on {metrics['entities']} entities in {metrics['n']} sentences</p>"
                + table([[k, r["precision"], r["recall"], r["f1"], r["support"]] for k, r in per_type.items()],
                        ["entity type", "precision", "recall", "F1", "support"]))
        if per_type:
            body += figures.draw("per_entity_type", charts.precision_recall_bars, per_type,
                                 caption="precision and recall per entity type")
        out = [Section("Entities", body)]
        if examples:
            out.append(Section("Sentences with the most wrong tags", examples_html(
                examples, lambda e: f"<div>true: {html.escape(e['true'])}</div><div>predicted: "
                                    f"{html.escape(e['predicted'])}</div><div>{e['wrong_tags']} wrong tags</div>")))
        return out


DET_POINTS = 400  # points of a stored DET curve, at most
HISTOGRAM_BINS = 40


def trial_summary(scores: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    """What the page draws of verification trials (similarity ``scores``, truth ``same``), bounded whatever their
    number: the DET curve (false acceptance and false rejection rates as the threshold moves, ``DET_POINTS`` at
    most, both ends kept) and the same-identity and different-identity score histograms on shared bins."""
    from sklearn.metrics import det_curve

    fpr, fnr, _ = det_curve(same, scores, drop_intermediate=True)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), DET_POINTS)).round().astype(int))
    edges = np.histogram_bin_edges(scores, bins=HISTOGRAM_BINS)
    return {"det": {"fpr": fpr[keep].round(6).tolist(), "fnr": fnr[keep].round(6).tolist()},
            "edges": edges.round(6).tolist(), "same": np.histogram(scores[same], edges)[0].tolist(),
            "different": np.histogram(scores[~same], edges)[0].tolist()}


@REPORT_VIEWS.register("verification", description="EER and accuracy at the chosen threshold, DET curve, score "
                       "histograms of same and different identities, the most confident wrong identifications")
class VerificationView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        predicted = task.predictions(scores).tolist()
        true = [str(v) for v in samples.labels or []]
        out = {"metrics": task.metrics(true, scores) if true else None, "true": true, "predicted": predicted,
               "similarity": np.asarray(scores, float).max(axis=1).round(4).tolist()}
        same = np.asarray(true)[:, None] == np.asarray(task.names)[None, :]  # (N, K): the metrics' trials
        if true and same.any() and not same.all():
            out["trials"] = trial_summary(np.asarray(scores, float).ravel(), same.ravel())
        return out

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        enrolled = set(task.names)
        wrong = [i for i, (t, p) in enumerate(zip(rows["true"], rows["predicted"], strict=True))
                 if p != (t if t in enrolled else "unknown")]
        return sorted(wrong, key=lambda i: -rows["similarity"][i])

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        return {"true": rows["true"][index], "predicted": rows["predicted"][index],
                "confidence": rows["similarity"][index]}

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        out = super().sections(rows, examples, figures)
        trials, metrics = rows.get("trials"), rows.get("metrics") or {}
        if trials:
            where = metrics.get("threshold_from", "")
            out.append(Section("Trials: DET curve and score distributions", (
                f"<p>each held-out sample against each enrolled identity ({metrics.get('trials')} trials): EER "
                f"<b>{metrics['eer']:.4f}</b>; the threshold {metrics['threshold']:.4f} was chosen on "
                f"{html.escape(str(where))}</p>")
                + figures.draw("det_curve", charts.det_curve, trials["det"], metrics["eer"],
                               caption="DET curve: false rejections against false acceptances (normal deviate "
                                       "scales)")
                + figures.draw("score_histogram", charts.score_histogram, trials, metrics["threshold"],
                               caption="similarity of same-identity and different-identity trials")))
        if examples:
            out.append(Section("Most similar wrong identities", examples_html(examples, _worst_card)))
        return out


@REPORT_VIEWS.register("generation", description="exact match, ROUGE-L and chrF; the completions least like their "
                       "references")
class GenerationView(ReportView):
    def rows(self, task: Task, samples: Samples, scores: np.ndarray) -> dict[str, Any]:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        references = [str(label) for label in samples.labels or []]
        rouge = [round(scorer.score(ref, str(out))["rougeL"].fmeasure, 4) for ref, out in zip(references, scores,
                                                                                               strict=True)]
        return {"metrics": task.metrics(references, scores) if references else None, "rouge_l": rouge}

    def worst(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any]) -> list[int]:
        return [int(i) for i in np.argsort(rows["rouge_l"], kind="stable")]

    def example(self, task: Task, samples: Samples, scores: np.ndarray, rows: dict[str, Any],
                index: int) -> dict[str, Any]:
        return {"true": samples.labels[index] if samples.labels else None, "predicted": str(scores[index]),
                "rouge_l": rows["rouge_l"][index]}

    def map_labels(self, samples: Samples) -> list[str]:
        return []  # completions are free text, not classes to colour by

    def sections(self, rows: dict[str, Any], examples: list[dict[str, Any]], figures: Figures) -> list[Section]:
        out = super().sections(rows, examples, figures)
        if examples:
            out.append(Section("Completions least like their references", "<p class='note'>lowest ROUGE-L first</p>"
                               + examples_html(examples, _worst_card)))
        return out
