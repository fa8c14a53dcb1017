"""rank_backbones and `transferkit rank` on tiny data, with tiny backbones registered here."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from support import WORDS, invoke, sentiment_texts
from transferkit.backbones import BACKBONES, Backbone, BackboneSpec
from transferkit.data import Samples
from transferkit.errors import ConfigError, DataError
from transferkit.select import SCORES, offline_candidates, parse_candidate, rank_backbones


class WordBackbone(Backbone):
    """Text features that either count the vocabulary's words (informative) or hash the text (noise).

    The informative one also has a source head over 4 "source classes" (positive words, negative
    words, filler, other), so LEEP and NCE apply to it.
    """

    modality = "text"

    def __init__(self, spec: BackboneSpec, informative: bool) -> None:
        super().__init__()
        self.spec, self.informative = spec, informative
        self.num_features = len(WORDS)
        self.proj = nn.Linear(len(WORDS), len(WORDS))
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        if informative:
            self.pretrained_head = nn.Linear(len(WORDS), 4)
            with torch.no_grad():
                self.pretrained_head.weight.zero_()
                self.pretrained_head.bias.zero_()
                self.pretrained_head.weight[0, :7] = 3.0  # positive words
                self.pretrained_head.weight[1, 7:14] = 3.0  # negative words
                self.pretrained_head.weight[2, 14:] = 1.0
            self.source_labels = ["positive", "negative", "filler", "other"]

    def transform(self, item: str, train: bool = False) -> torch.Tensor:
        if self.informative:
            words = item.split()
            return torch.tensor([float(words.count(w)) for w in WORDS])
        seed = int(hashlib.sha256(item.encode()).hexdigest()[:8], 16)
        return torch.from_numpy(np.random.default_rng(seed).standard_normal(len(WORDS)).astype(np.float32))

    def collate(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"x": torch.stack(samples)}

    def forward_features(self, x: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [("proj", self.proj)]


@pytest.fixture(scope="module", autouse=True)
def word_backbones() -> Iterator[None]:
    for name, informative in (("test_words", True), ("test_hash", False)):
        BACKBONES.register(name, modality="text", description="test", offline=False)(
            lambda spec, informative=informative: WordBackbone(spec, informative))
    yield
    for name in ("test_words", "test_hash"):
        BACKBONES.remove(name)


@pytest.fixture(scope="module")
def texts() -> Samples:
    items, labels = sentiment_texts(15, seed=0)
    return Samples(items=items, labels=labels, modality="text", origins=[f"row {i}" for i in range(len(items))])


def test_every_score_ranks_the_informative_backbone_first(texts: Samples) -> None:
    scores = SCORES.names()
    ranking = rank_backbones(texts, ["test_hash", "test_words"], scores, progress=False)

    assert ranking.sort_by == "logme" and ranking.best == "test_words"
    assert [row.candidate for row in ranking.rows] == ["test_words", "test_hash"]
    words, hashed = ranking.rows
    for name in scores:
        if name in ("leep", "nce"):  # the hashing backbone has no source head
            assert hashed.scores[name] is None and np.isfinite(words.scores[name])
        else:
            assert words.scores[name] > hashed.scores[name], name
    assert ranking.n_samples == 30 and ranking.num_classes == 2 and ranking.seconds > 0
    table = ranking.format()
    assert table.splitlines()[1].split()[:2] == ["1", "test_words"] and "logme*" in table
    json.dumps(ranking.to_dict())


def test_sorting_by_a_source_score_puts_headless_candidates_last(texts: Samples) -> None:
    ranking = rank_backbones(texts, ["test_hash", "test_words"], ["leep", "knn_cv"], progress=False)
    assert ranking.sort_by == "leep" and ranking.best == "test_words"
    assert "leep needs a pretrained source head" in ranking.notes[0] and "test_hash" in ranking.notes[0]
    assert rank_backbones(texts, ["test_words", "test_hash"], ["leep", "knn_cv"], sort_by="knn_cv",
                          progress=False).best == "test_words"


def test_features_go_through_the_shared_cache(texts: Samples, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    rank_backbones(texts, ["test_words", "test_hash"], ["logme"], progress=False)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 2


def test_candidates_and_errors(texts: Samples) -> None:
    assert parse_candidate("scratch:efficientnet_lite0", {"image_size": 64}) == BackboneSpec(
        "efficientnet_lite0", pretrained=False, options={"image_size": 64})
    assert parse_candidate(" minilm ").pretrained
    ge2e = ["ge2e_speaker"] if importlib.util.find_spec("resemblyzer") else []  # optional weights wheel
    assert offline_candidates("audio") == ["whisper_tiny_en", "whisper_base", *ge2e]
    assert offline_candidates("image") == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    with pytest.raises(ConfigError, match="unknown score 'nope'"):
        rank_backbones(texts, ["test_words"], ["nope"], progress=False)
    with pytest.raises(ConfigError, match="cannot sort by 'leep'"):
        rank_backbones(texts, ["test_words"], ["logme"], sort_by="leep", progress=False)
    with pytest.raises(ConfigError, match="repeat"):
        rank_backbones(texts, ["test_words", "test_words"], ["logme"], progress=False)
    with pytest.raises(ConfigError, match="empty backbone name"):
        parse_candidate("scratch:")
    with pytest.raises(DataError, match="labelled"):
        rank_backbones(Samples(texts.items, None, "text", texts.origins), ["test_words"], progress=False)


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rank") / "data.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*sentiment_texts(12, seed=1), strict=True))
    return path


def test_cli_rank_prints_the_table_best_first(data_csv: Path, tiny_bert_dir: Path) -> None:
    candidates = f"test_hash,test_words,hf:{tiny_bert_dir},scratch:hf:{tiny_bert_dir}"
    result = invoke("rank", data_csv, "--candidates", candidates, "--max-length", 16)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["1", "test_words"]
    assert f"scratch:hf:{tiny_bert_dir}" in result.stdout
    assert "4 candidates ranked by logme on 24 samples, 2 classes" in result.stdout
    assert lines[-1] == "best by logme: test_words"


def test_cli_rank_json_and_chosen_scores(data_csv: Path, tmp_path: Path) -> None:
    result = invoke("rank", data_csv, "--candidates", "test_words,test_hash", "--scores", "knn_cv,nce",
                    "--sort-by", "knn_cv", "--json", "--out", tmp_path / "ranked", "--report")
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.stdout)
    assert json.loads((tmp_path / "ranked" / "ranking.json").read_text()) == ranking
    page = (tmp_path / "ranked" / "report.html").read_text()
    assert "data-plot='score_knn_cv.png'><img" in page and "data-plot='score_nce.png'><img" in page
    assert sorted(p.name for p in (tmp_path / "ranked" / "report").glob("*.png")) == ["score_knn_cv.png",
                                                                                        "score_nce.png"]
    assert ranking["sort_by"] == "knn_cv" and ranking["scores"] == ["knn_cv", "nce"]
    assert [row["candidate"] for row in ranking["rows"]] == ["test_words", "test_hash"]
    assert ranking["rows"][1]["scores"]["nce"] is None


def test_cli_rank_user_errors(data_csv: Path) -> None:
    from support import assert_user_error

    assert_user_error(invoke("rank", data_csv, "--candidates", "no_such_net"), "no_such_net")
    assert_user_error(invoke("rank", data_csv, "--candidates", "test_words", "--scores", "nope"), "nope")
    assert_user_error(invoke("rank", data_csv, "--candidates", "scratch:efficientnet_lite0", "--image-size", 32),
                      "takes image", "text")


def test_cli_lists_scores() -> None:
    result = invoke("scores")
    assert result.exit_code == 0
    for name in ("logme", "leep", "nce", "h_score", "knn_cv", "linear_cv"):
        assert any(line.startswith(name + " ") for line in result.stdout.splitlines()), name
    assert "needs source head" in next(line for line in result.stdout.splitlines() if line.startswith("leep"))
