"""The automatic default of ``fit``: chosen on validation data, never below the probe, the reasons written down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import assert_user_error, invoke, sentiment_texts, write_csv
from transferkit.auto.budget import Budget, parse_budget
from transferkit.auto.choose import CHOICES_FILE, auto_fit
from transferkit.data import Samples
from transferkit.errors import ConfigError
from transferkit.estimator import TransferClassifier


def _samples(n: int = 12) -> Samples:
    texts, labels = sentiment_texts(n)
    return Samples(items=texts, labels=labels, modality="text", origins=[f"row {i}" for i in range(len(texts))])


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), ("45", 45.0),
                                               (None, None)])
def test_budgets_parse(text: str | None, seconds: float | None) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "-5m", "0", "5d"])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_budget(text)


def test_a_budget_counts_down() -> None:
    assert Budget(None).allows(1e9)
    assert not Budget(10.0, started=Budget(None).started - 11).allows(0.0)


def test_without_a_budget_the_choice_gets_three_probes_time_and_scores_on_held_out_data(tiny_bert_dir: Path) -> None:
    from transferkit.auto.choose import AUTO_TIME_RATIO

    template = TransferClassifier(f"hf:{tiny_bert_dir}", val_fraction=0.25, progress=False)
    fitted, choice = auto_fit(template, _samples(), choose_backbone=False)
    assert choice.budget_seconds is None and choice.time_limit_seconds > 0
    reason = next(r for r in choice.reasons if r.startswith("no --budget"))
    assert f"{AUTO_TIME_RATIO:g}x the probe's" in reason
    assert choice.candidates[0]["strategy"] == "linear_probe" and choice.validation["size"] == 6
    assert 0.0 <= choice.candidates[0]["val_score"] <= 1.0
    lp_ft = choice.candidates[1]  # run or skipped, its cost estimate is bounded by the probe's own rate
    assert lp_ft["probe_seconds_per_sample"] * 24 * AUTO_TIME_RATIO == pytest.approx(choice.time_limit_seconds)
    assert lp_ft["forward_seconds_per_sample"] <= lp_ft["probe_seconds_per_sample"]
    scores = {c["strategy"]: c.get("val_score") for c in choice.candidates}
    expected = "lp_ft" if (scores.get("lp_ft") or 0.0) > scores["linear_probe"] else "linear_probe"
    assert fitted.strategy == choice.strategy == expected
    if expected == "linear_probe":  # the kept probe is the one `fit --strategy linear_probe` fits on all the data
        plain = TransferClassifier(f"hf:{tiny_bert_dir}", progress=False).fit(_samples())
        assert fitted.predict_proba(_samples().items) == pytest.approx(plain.predict_proba(_samples().items))


def test_when_the_whole_backbone_does_not_fit_its_top_trains_on_kept_outputs(tiny_bert_dir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.auto import choose

    # 1 s a sample (0.6 s in a batch grouped by length): with 18 training and 6 validation samples, 2 epochs of the
    # whole backbone take 120 s, more than the safe share (80 s) of a 100 s budget; the frozen layers once (12 s)
    # and 2 epochs of the top half (2 x 26 s) fit, 3 do not
    monkeypatch.setattr(choose, "_forward_seconds", lambda *args, grouped=False, **kwargs: 0.6 if grouped else 1.0)
    try_lp_ft = choose._try_lp_ft  # and the probe as slow: its rate bounds the estimate
    monkeypatch.setattr(choose, "_try_lp_ft", lambda *args, **kwargs: try_lp_ft(*args, **{**kwargs, "probe_rate": 1.0}))
    template = TransferClassifier(f"hf:{tiny_bert_dir}", val_fraction=0.25, lr=1e-3, progress=False)
    fitted, choice = auto_fit(template, _samples(), budget=100.0, choose_backbone=False)
    tuned = choice.candidates[-1]
    assert tuned["strategy"] == "lp_ft" and tuned["epochs"] == 2
    assert tuned["train_last_k"] == 1 and tuned["cache_frozen"] is True and "val_score" in tuned
    assert any("its top 1 of 3 layer groups does" in reason for reason in choice.reasons)
    expected = "lp_ft" if tuned["val_score"] > choice.candidates[0]["val_score"] else "linear_probe"
    assert fitted.strategy == expected


def test_lp_ft_competes_within_a_budget_and_loses_ties_to_the_probe(tiny_bert_dir: Path) -> None:
    template = TransferClassifier(f"hf:{tiny_bert_dir}", val_fraction=0.25, batch_size=8, epochs=2, progress=False)
    fitted, choice = auto_fit(template, _samples(), budget=600.0, choose_backbone=False)
    probe, tuned = choice.candidates
    assert tuned["strategy"] == "lp_ft" and tuned["epochs"] == 2
    assert choice.lr is not None and choice.lr["range_test"]["suggestion"] == tuned["lr"]
    expected = "lp_ft" if tuned["val_score"] > probe["val_score"] else "linear_probe"
    assert fitted.strategy == choice.strategy == expected


def test_a_budget_too_small_for_lp_ft_keeps_the_probe(tiny_bert_dir: Path) -> None:
    template = TransferClassifier(f"hf:{tiny_bert_dir}", val_fraction=0.25, progress=False)
    _, choice = auto_fit(template, _samples(), budget=1e-3, choose_backbone=False)
    assert choice.strategy == "linear_probe"
    assert choice.candidates[-1] == {**choice.candidates[-1], "strategy": "lp_ft", "skipped": "time"}


def test_cli_fit_without_a_strategy_writes_why_it_chose(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", *sentiment_texts(10))
    run = tmp_path / "run"
    result = invoke("fit", data, "--backbone", f"hf:{tiny_bert_dir}", "--out", run)
    assert result.exit_code == 0, result.output
    choices = json.loads((run / CHOICES_FILE).read_text())
    assert choices["strategy"] == "linear_probe" and choices["backbone"]["by"] == "given"
    assert json.loads((run / "transferkit.json").read_text())["strategy"] == "linear_probe"
    both = invoke("fit", data, "--strategy", "linear_probe", "--budget", "1m", "--out", tmp_path / "other")
    assert_user_error(both, "--budget")
    orphan = invoke("fit", data, "--param", "c=0.1", "--out", tmp_path / "other")
    assert_user_error(orphan, "--strategy")


def test_without_a_budget_only_candidates_within_the_cost_ratio_are_ranked(monkeypatch: pytest.MonkeyPatch) -> None:
    from transferkit.auto import choose
    from transferkit.select.rank import CandidateScores, Ranking

    assert choose.affordable(["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
                             "efficientnet_lite0") == (["efficientnet_lite0", "efficientnet_lite1"],
                                                       {"efficientnet_lite2": pytest.approx(1.72 / 0.77)})
    assert choose.affordable(["minilm", "mpnet"], "minilm")[1].keys() == {"mpnet"}
    assert choose.affordable(["lenet"], "efficientnet_lite0") == (["lenet"], {})  # an unknown cost is kept
    ranked: list[list[str]] = []

    def fake_rank(samples: Samples, candidates: list[str], *args: object, **kwargs: object) -> Ranking:
        ranked.append(list(candidates))
        rows = [CandidateScores(name, None, 1, {"logme": float(i)}, 0.0, 0.0)  # type: ignore[arg-type]
                for i, name in enumerate(candidates)]  # the last candidate scores best
        return Ranking(rows=rows[::-1], sort_by="logme", scores=["logme"], n_samples=len(samples), num_classes=2)

    monkeypatch.setattr("transferkit.select.rank_backbones", fake_rank)
    installed = ["minilm", "mpnet"]
    monkeypatch.setattr("transferkit.select.rank.offline_candidates", lambda modality: installed)
    task = type("Task", (), {"name": "classification"})()

    def choose_among(budgeted: bool, samples: Samples | None = None) -> tuple[str, choose.AutoChoice]:
        choice = choose.AutoChoice()
        template = TransferClassifier("minilm", progress=False)
        chosen = choose._choose_backbone(template, samples or _samples(), task, True, choice, budgeted=budgeted)
        return chosen, choice

    chosen, choice = choose_among(budgeted=True)  # a budget ranks every installed candidate
    assert ranked == [["minilm", "mpnet"]] and chosen == "mpnet" and choice.backbone["not_ranked"] == {}
    chosen, choice = choose_among(budgeted=False)  # mpnet costs 8x minilm: not ranked, minilm left alone
    assert ranked == [["minilm", "mpnet"]] and chosen == "minilm"
    assert choice.backbone["by"] == "default" and set(choice.backbone["not_ranked"]) == {"mpnet"}
    assert any("not ranked without --budget" in reason and "mpnet" in reason for reason in choice.reasons)
    installed[:] = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    images = Samples(items=[f"{i}.jpg" for i in range(4)], labels=["a", "b"] * 2, modality="image",
                     origins=[f"{i}.jpg" for i in range(4)])
    chosen, choice = choose_among(budgeted=False, samples=images)  # Lite2 costs 2.2x Lite0
    assert ranked[-1] == ["efficientnet_lite0", "efficientnet_lite1"] and chosen == "efficientnet_lite1"
    assert set(choice.backbone["not_ranked"]) == {"efficientnet_lite2"}


def test_without_a_budget_a_backbone_that_cannot_be_cut_is_not_even_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    from support import blob_images
    from transferkit.auto import choose

    def no_timing(*args: object, **kwargs: object) -> float:
        raise AssertionError("the forward pass was timed")

    monkeypatch.setattr(choose, "_forward_seconds", no_timing)
    images, labels = blob_images(8)
    samples = Samples(items=images, labels=labels, modality="image", origins=[f"X[{i}]" for i in range(len(images))])
    template = TransferClassifier("timm:test_efficientnet", pretrained=False, backbone_options={"image_size": 32},
                                  val_fraction=0.25, progress=False)
    fitted, choice = auto_fit(template, samples, choose_backbone=False)
    assert fitted.strategy == "linear_probe" and choice.candidates[-1] == {"strategy": "lp_ft", "skipped": "time"}
    assert any("cannot be" in reason and "passes over the data" in reason for reason in choice.reasons)
