"""How many labels does transfer save? ``transferkit.curve.label_curve`` on hymenoptera and SST-2.

For each set, the zoo backbone of its modality is fitted on growing shares of the training data, with
its pretrained weights (the linear probe) and from random weights (a full fine-tune, ``--scratch-epochs``
epochs, lr 1e-3, early stopping on its own validation split), and every point is scored on the same held-out set:
hymenoptera's 153 val images; SST-2's 872 dev sentences, with a pool of 2,000 training sentences (the
seed-0 draw of ``tasks.sst2_subset``). Nothing is chosen on the held-out sets.

    nice -n 5 python benchmarks/label_curve.py --data ../shared/data --sets hymenoptera --scratch-epochs 5

Writes ``benchmarks/results/label_curve_<set>.json`` and ``benchmarks/label_curve_<set>.png`` (the plot
RESULTS.md shows). Timings are on shared, contended CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tasks  # noqa: E402
from transferkit.curve import CurvePoint, LabelCurve, default_recipes, label_curve  # noqa: E402
from transferkit.report import charts  # noqa: E402
from transferkit.report.plots import save_png  # noqa: E402
from transferkit.safety import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = [0.01, 0.05, 0.2, 1.0]
SETS = {
    "hymenoptera": {"backbone": "efficientnet_lite0", "load": lambda data: tasks.hymenoptera(data)},
    "sst2": {"backbone": "minilm", "load": lambda data: tasks.sst2_subset(data, train_size=2000, seed=0)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", default="hymenoptera,sst2")
    parser.add_argument("--scratch-epochs", type=int, default=10)
    parser.add_argument("--markdown", action="store_true", help="print the RESULTS.md table from the JSON")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)),
                        help="the points to measure; the JSON keeps the other points it already holds")
    parser.add_argument("--recipes", default="transfer,scratch", help="transfer, scratch or both")
    parser.add_argument("--machine", default="2 CPU cores shared with 7 other agents", help="kept in the JSON")
    args = parser.parse_args()
    if args.markdown:
        print(markdown())
        return
    for name in args.sets.split(","):
        spec = SETS[name]
        train, test = spec["load"](args.data)
        start = time.perf_counter()

        path = ROOT / "benchmarks" / "results" / f"label_curve_{name}.json"
        fractions = [float(f) for f in args.fractions.split(",")]
        wanted = set(args.recipes.split(","))
        recipes = [r for r in default_recipes(scratch_epochs=args.scratch_epochs)
                   if ("transfer" if r.name.startswith("transfer") else "scratch") in wanted]
        kept = [CurvePoint(**p) for p in (json.loads(path.read_text())["points"] if path.is_file() else [])
                if not (p["fraction"] in fractions and any(p["recipe"] == r.name for r in recipes))]

        def save(curve: LabelCurve, name: str = name, start: float = start, done: bool = False,
                 path: Path = path, kept: list[CurvePoint] = kept) -> None:
            # written after every point, so that a long run keeps what it measured; points measured before and
            # not measured again are kept
            merged = LabelCurve(curve.metric or "accuracy", curve.backbone, curve.n_train, curve.n_eval,
                                default_recipes(scratch_epochs=args.scratch_epochs),
                                sorted([*kept, *curve.points], key=lambda point: (point.recipe, point.fraction)))
            result = {"set": name, **merged.to_dict(), "seconds": time.perf_counter() - start, "complete": done,
                      "command": f"nice -n 5 python benchmarks/label_curve.py --sets {name} "
                                 f"--scratch-epochs {args.scratch_epochs} --fractions {args.fractions} "
                                 f"--recipes {args.recipes}",
                      "machine": args.machine}
            write_json(path, result)
            save_png(charts.label_curve(merged.series(), merged.metric),
                     ROOT / "benchmarks" / f"label_curve_{name}.png")

        curve = label_curve(train, test, fractions=fractions, backbone=spec["backbone"],
                            recipes=recipes, seed=0,
                            log=lambda line, name=name: print(f"{name}: {line}", flush=True), on_point=save)
        save(curve, done=True)
        print(json.dumps({p.recipe + f" n={p.n_labels}": round(p.score, 4) for p in curve.points}), flush=True)



def markdown(results: Path = ROOT / "benchmarks" / "results") -> str:
    """The RESULTS.md table of every measured point, from the JSON files."""
    lines = ["| set | labels | transfer (probe) | from scratch (fine-tune) | seconds (transfer / scratch) |",
             "|---|---|---|---|---|"]
    for name in SETS:
        path = results / f"label_curve_{name}.json"
        if not path.is_file():
            continue
        found = json.loads(path.read_text())
        by_n: dict[int, dict[str, dict]] = {}
        for point in found["points"]:
            by_n.setdefault(point["n_labels"], {})[point["recipe"].split(" ")[0]] = point
        for n, pair in sorted(by_n.items()):
            cells = [f"{pair[k]['score']:.3f}" if k in pair else "not measured (time)" for k in ("transfer", "from")]
            secs = " / ".join(f"{pair[k]['seconds']:.0f}" if k in pair else "—" for k in ("transfer", "from"))
            lines.append(f"| {name} | {n} | {cells[0]} | {cells[1]} | {secs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
