"""Online learning: features, label join, river models, the learner and its snapshots."""

from __future__ import annotations

from online_learning.decay import DecayedScores
from online_learning.features import FEATURES, ranking_features
from online_learning.item_stats import ItemStats
from online_learning.join import Example, JoinState
from online_learning.learner import Learner, read_latest_snapshot
from online_learning.model import RankingModel, Score
from online_learning.settings import LearningSettings
from online_learning.snapshot import Snapshot

__all__ = [
    "FEATURES",
    "DecayedScores",
    "Example",
    "ItemStats",
    "JoinState",
    "Learner",
    "LearningSettings",
    "RankingModel",
    "Score",
    "Snapshot",
    "ranking_features",
    "read_latest_snapshot",
]
