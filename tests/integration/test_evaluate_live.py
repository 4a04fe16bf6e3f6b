"""``streamrec evaluate --via-kafka``: the live replay asks the same questions and gets the in-process answers."""

from __future__ import annotations

import asyncio

import pytest

from online_learning.settings import LearningSettings
from ranker.settings import RankerSettings
from streamrec.evaluation.command import make_encoder
from streamrec.evaluation.data import Dataset, movielens_100k
from streamrec.evaluation.live import METHOD, live_system
from streamrec.evaluation.metrics import Request
from streamrec.evaluation.replay import StreamrecReplay, System, replay

pytestmark = pytest.mark.integration

EVENTS = 120


def _requests(system: System, dataset: Dataset) -> list[Request]:
    """The fixed blend's answer to every request of the replay, in order."""
    recorded: list[Request] = []
    asyncio.run(replay(dataset, system, [], methods=(METHOD,), on_request=lambda _, r: recorded.append(r)))
    return recorded


def test_the_live_replay_ranks_like_the_in_process_one() -> None:
    """Through Kafka, the worker and the API, the fixed blend's lists match the in-process replay of the same events."""
    dataset = movielens_100k(limit=EVENTS)
    encoder = make_encoder("model")
    try:
        local = StreamrecReplay(
            encoder, ranker=RankerSettings(), learning=LearningSettings(), profile_half_life_ms=7 * 86_400_000
        )
        expected = _requests(local, dataset)
    finally:
        encoder.close()
    with live_system() as live:
        got = _requests(live, dataset)
    assert [r.index for r in got] == [r.index for r in expected]
    assert [r.target for r in got] == [r.target for r in expected]
    # Milvus and numpy round float32 dot products differently, so a near tie
    # may swap; the lists themselves must agree.
    overlap = [len(set(g.ranked[:10]) & set(e.ranked[:10])) / 10 for g, e in zip(got, expected, strict=True)]
    assert sum(overlap) / len(overlap) >= 0.9, overlap
    same_top = sum(g.ranked[:3] == e.ranked[:3] for g, e in zip(got, expected, strict=True))
    assert same_top >= 0.8 * len(got), f"{same_top} of {len(got)} lists share their top 3"
