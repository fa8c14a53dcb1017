"""The label-efficiency curve: a task's score against the number of labelled samples, for transfer from a
pretrained backbone and for the same network trained from random weights.

It answers, on the user's own data, whether and by how much transfer learning needs fewer labels. Each
point fits on a subset of the training data (stratified for classes, the task's own ``split``) and is
scored on one fixed evaluation set, which is never used to choose anything: each fit chooses its
settings on its own training subset (the probe's cross-validation, the fine-tune's validation split).

Example:
    >>> curve = label_curve(train, test, fractions=[0.05, 0.2, 1.0], backbone="efficientnet_lite0")
    >>> write_curve("curve/", curve)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transferkit.data import Samples
from transferkit.errors import ConfigError


@dataclass
class Recipe:
    """One way of training that the curve follows: a strategy on pretrained or random weights."""

    name: str
    strategy: str
    pretrained: bool
    epochs: int | None = None
    lr: float | None = None


@dataclass
class CurvePoint:
    recipe: str
    fraction: float
    n_labels: int
    score: float
    seconds: float


@dataclass
class LabelCurve:
    """Every point, with what produced them."""

    metric: str
    backbone: str
    n_train: int
    n_eval: int
    recipes: list[Recipe]
    points: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "backbone": self.backbone, "n_train": self.n_train, "n_eval": self.n_eval,
                "recipes": [asdict(r) for r in self.recipes], "points": [asdict(p) for p in self.points]}

    def series(self) -> dict[str, list[tuple[int, float]]]:
        """Per recipe, ``(labels, score)`` in the order of the fractions."""
        return {r.name: [(p.n_labels, p.score) for p in self.points if p.recipe == r.name] for r in self.recipes}


def parse_fractions(text: str) -> list[float]:
    """``"0.01,0.05,1"`` as numbers.

    Raises:
        ConfigError: a part that is not a number.
    """
    values = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                values.append(float(part))
            except ValueError:
                raise ConfigError(f"--fractions: {part!r} is not a number") from None
    return values


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """The fractions sorted, each in ``(0, 1]``.

    Raises:
        ConfigError: an empty list, or a fraction outside ``(0, 1]``.
    """
    if not fractions:
        raise ConfigError("--fractions needs at least one value in (0, 1]")
    for value in fractions:
        if not 0 < value <= 1 or math.isnan(value):
            raise ConfigError(f"--fractions: {value!r} is not in (0, 1]")
    return sorted(set(fractions))


def label_curve(train: Samples, test: Samples, *, fractions: Sequence[float], backbone: str,
                recipes: Sequence[Recipe] | None = None, task: str | None = None, seed: int = 0,
                batch_size: int = 32, backbone_options: dict[str, Any] | None = None,
                log: Callable[[str], None] | None = None,
                on_point: Callable[[LabelCurve], None] | None = None) -> LabelCurve:
    """Fit every recipe on each fraction of ``train`` and score it on ``test``.

    Args:
        fractions: shares of ``train`` in ``(0, 1]``; a fraction keeps at least one sample per class.
        recipes: default: the linear probe on pretrained weights and a 10-epoch fine-tune from random ones.
        task: the task's name (default: classification).
        log: called with one line per point; on_point: called with the curve so far after each point.

    Raises:
        ConfigError: a fraction outside ``(0, 1]``.
        DataError: unusable labels (as ``fit`` raises them).
    """
    from transferkit.estimator import TransferEstimator
    from transferkit.tasks import make_task

    fractions = check_fractions(fractions)
    recipes = list(recipes or default_recipes())
    splitter = make_task(task or "classification")
    curve = LabelCurve(metric="", backbone=backbone, n_train=len(train), n_eval=len(test), recipes=recipes)
    for fraction in fractions:
        subset = train if fraction >= 1 else train.subset(splitter.split(train.labels or [], fraction, seed)[1])
        for recipe in recipes:
            start = time.perf_counter()
            clf = TransferEstimator(backbone=backbone, strategy=recipe.strategy, task=task,
                                    pretrained=recipe.pretrained, epochs=recipe.epochs, lr=recipe.lr,
                                    batch_size=batch_size, backbone_options=backbone_options, seed=seed,
                                    progress=False)
            clf.fit(subset)
            score = clf.score(test)
            curve.metric = clf.task_.score_name
            point = CurvePoint(recipe.name, fraction, len(subset), score, time.perf_counter() - start)
            curve.points.append(point)
            if log is not None:
                log(f"{recipe.name:<28} {len(subset):>6} labels  {curve.metric} {score:.4f}  "
                    f"({point.seconds:.1f}s)")
            if on_point is not None:
                on_point(curve)
    return curve


def default_recipes(scratch_epochs: int = 10, scratch_lr: float | None = 1e-3, transfer: str = "linear_probe",
                    transfer_epochs: int | None = None, transfer_lr: float | None = None) -> list[Recipe]:
    """Transfer (``transfer`` on pretrained weights) and from scratch (a full fine-tune of random weights)."""
    return [Recipe(f"transfer ({transfer})", transfer, True, transfer_epochs, transfer_lr),
            Recipe("from scratch (finetune)", "finetune", False, scratch_epochs, scratch_lr)]


def write_curve(out: str | Path, curve: LabelCurve, *, overwrite: bool = False, title: str = "") -> Path:
    """Write ``curve.json``, ``curve.png`` and ``report.html`` (the plot and the table) into ``out``."""
    from transferkit.report import charts
    from transferkit.report.page import Figures, Section, table, write_page
    from transferkit.safety import staged_directory, write_json

    with staged_directory(Path(out), overwrite=overwrite) as staging:
        write_json(staging / "curve.json", curve.to_dict())
        figure = Figures(staging).draw("curve", charts.label_curve, curve.series(), curve.metric,
                                       caption=f"{curve.metric} on {curve.n_eval} held-out samples against the "
                                               "number of labelled training samples")
        rows = [[p.recipe, p.fraction, p.n_labels, p.score, round(p.seconds, 1)] for p in curve.points]
        body = (f"<p>backbone {curve.backbone}; {curve.n_train} training samples; every point is scored on the "
                f"same {curve.n_eval} held-out samples</p>" + figure
                + table(rows, ["recipe", "fraction", "labels", curve.metric, "seconds"]))
        write_page(staging / "report.html", title or "transferkit: score against the number of labels",
                   [Section("Transfer against from scratch", body)])
    return Path(out)
