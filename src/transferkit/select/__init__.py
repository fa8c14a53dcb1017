"""Choosing a backbone before training: transferability scores and the ranking built on them."""

from transferkit.select.rank import (
    DEFAULT_SCORE,
    DEFAULT_SCORES,
    CandidateScores,
    Ranking,
    offline_candidates,
    parse_candidate,
    rank_backbones,
)
from transferkit.select.scores import SCORES, ScoreEntry, compute_score

__all__ = ["DEFAULT_SCORE", "DEFAULT_SCORES", "SCORES", "CandidateScores", "Ranking", "ScoreEntry", "compute_score",
           "offline_candidates", "parse_candidate", "rank_backbones"]

