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
from transferkit.select.scores import (
    ScoreEntry,
    compute_score,
    get_score,
    register_score,
    registered_scores,
)

__all__ = ["DEFAULT_SCORE", "DEFAULT_SCORES", "CandidateScores", "Ranking", "ScoreEntry", "compute_score",
           "get_score", "offline_candidates", "parse_candidate", "rank_backbones", "register_score",
           "registered_scores"]
