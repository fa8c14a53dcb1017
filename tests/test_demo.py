"""The built-in demo runs end to end on the packaged weights (tiny settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transferkit import load
from transferkit.demo import digits_few_shot, format_table, run_demo
from transferkit.errors import ArtifactError

pytestmark = pytest.mark.integration


def test_few_shot_split_is_disjoint_and_balanced() -> None:
    x_train, y_train, x_test, y_test = digits_few_shot(shots=3, seed=0, test_size=50)
    assert x_train.shape == (30, 8, 8) and x_train.dtype.name == "uint8"
    assert sorted(set(y_train)) == [str(d) for d in range(10)]
    assert all(y_train.count(str(d)) == 3 for d in range(10))
    train_bytes = {img.tobytes() for img in x_train}
    assert len(x_test) == 50 and not any(img.tobytes() in train_bytes for img in x_test)


def test_demo_writes_runs_that_predict(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    rows = run_demo(out, shots=3, image_size=64, epochs=1, test_size=40, progress=False)
    assert [r.name for r in rows] == ["linear_probe", "finetune", "from_scratch"]
    probe = rows[0]
    assert probe.accuracy > 0.3  # ten classes: chance is 0.1; pretrained features transfer with 3 shots
    summary = json.loads((out / "summary.json").read_text())
    assert [row["name"] for row in summary] == ["linear_probe", "finetune", "from_scratch"]
    examples = sorted((out / "examples").glob("*.png"))
    assert len(examples) == 5
    clf = load(out / "linear_probe")
    predicted = clf.predict([str(p) for p in examples])
    assert len(predicted) == 5 and set(predicted) <= {str(d) for d in range(10)}
    assert "gain vs scratch" in format_table(rows)
    with pytest.raises(ArtifactError, match="already exists"):
        run_demo(out, shots=3, image_size=64, epochs=1, test_size=40, progress=False)
