"""Publishing and hot-swapping models: the API's ModelHolder, snapshots, and the learner's offsets and health gate."""

from __future__ import annotations

import math
import pickle
import random
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from online_learning.item_stats import ItemStats
from online_learning.join import Example
from online_learning.learner import Learner
from online_learning.model import RankingModel
from online_learning.settings import LearningSettings
from online_learning.snapshot import FORMAT, Snapshot
from ranker.models import ModelHolder
from streamrec.kafka_client import KafkaConnection

MIN_EXAMPLES = 20


def _features(rng: random.Random) -> dict[str, float]:
    return {"ctr": rng.uniform(0.0, 0.2), "similarity": rng.random(), "position": 0.0}


def _model(learned: int = MIN_EXAMPLES, *, healthy: bool = True) -> RankingModel:
    """A logreg model trained on ``learned`` examples clicked when ctr > 0.1; NaN-poisoned if not healthy."""
    rng = random.Random(learned)
    model = RankingModel.create("logreg")
    for _ in range(learned):
        features = _features(rng)
        model.learn(features, features["ctr"] > 0.1)
    if not healthy:
        model.pipeline["LogisticRegression"]._weights["ctr"] = float("nan")
    return model


def _collapsed_model() -> RankingModel:
    """A model whose progressive AUC collapsed: every label contradicted its prediction."""
    rng = random.Random(0)
    model = RankingModel.create("logreg")
    for _ in range(250):
        features = _features(rng)
        model.learn(features, model.probability(features) < 0.5)
    return model


def _snapshot(version: int, model: RankingModel | None = None, created_ms: int = 0) -> Snapshot:
    items = ItemStats(3600.0)
    items.record("p1", viewed=3.0, clicked=1.0, at_ms=created_ms)
    return Snapshot(version, created_ms, model or _model(), items, {0: 10 * version})


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _swaps(outcome: str) -> float:
    return _sample("streamrec_model_swaps_total", outcome=outcome)


@pytest.fixture
def holder() -> ModelHolder:
    """A holder serving once a model has learned MIN_EXAMPLES examples."""
    return ModelHolder(min_examples=MIN_EXAMPLES, min_auc=0.4)


def test_offer_swaps_in_newer_healthy_snapshots(holder: ModelHolder) -> None:
    """Each newer healthy snapshot replaces the current one, counted as 'swapped', and sets the version gauge."""
    assert holder.version == 0
    assert holder.current is None
    before = _swaps("swapped")
    for version in (1, 3):
        snapshot = _snapshot(version)
        assert holder.offer(snapshot) is True
        assert holder.current is snapshot
        assert holder.version == version
        assert _sample("streamrec_model_version") == version
    assert _swaps("swapped") == before + 2


@pytest.mark.parametrize("version", [1, 2], ids=["older", "equal"])
def test_offer_refuses_a_stale_snapshot(holder: ModelHolder, version: int) -> None:
    """A snapshot not newer than the current one is refused as 'stale' and the current one stays."""
    current = _snapshot(2)
    holder.offer(current)
    before = _swaps("stale")
    assert holder.offer(_snapshot(version)) is False
    assert holder.current is current
    assert _swaps("stale") == before + 1


UNHEALTHY = {"non-finite": lambda: _model(healthy=False), "collapsed-auc": _collapsed_model}


@pytest.mark.parametrize("make", UNHEALTHY.values(), ids=UNHEALTHY.keys())
def test_offer_refuses_an_unhealthy_snapshot_and_keeps_the_last_good(holder: ModelHolder, make: Any) -> None:
    """An unhealthy newer snapshot is refused as 'rejected'; the last good one keeps serving."""
    assert holder.offer(_snapshot(1, make())) is False  # nothing good yet: nothing served
    assert holder.current is None
    good = _snapshot(2)
    holder.offer(good)
    before = _swaps("rejected")
    assert holder.offer(_snapshot(3, make())) is False
    assert holder.current is good
    assert holder.serving() is good
    assert holder.version == 2
    assert _swaps("rejected") == before + 1


@pytest.mark.parametrize(("learned", "served"), [(0, False), (MIN_EXAMPLES - 1, False), (MIN_EXAMPLES, True)])
def test_serving_waits_for_min_examples(holder: ModelHolder, learned: int, served: bool) -> None:
    """serving() is None until the current model has learned min_examples examples; current is set regardless."""
    snapshot = _snapshot(1, _model(learned))
    assert holder.serving() is None
    holder.offer(snapshot)
    assert holder.current is snapshot
    assert (holder.serving() is snapshot) is served


def test_age_gauge_follows_the_served_snapshot(holder: ModelHolder) -> None:
    """streamrec_model_age_seconds is 0 before a snapshot, then the time since its created_ms."""
    assert _sample("streamrec_model_age_seconds") == 0.0
    holder.offer(_snapshot(1, created_ms=int(time.time() * 1000) - 60_000))
    assert _sample("streamrec_model_age_seconds") == pytest.approx(60.0, abs=5.0)


def test_snapshot_round_trip_keeps_model_items_and_offsets() -> None:
    """loads(dumps(s)) gives back the same provenance, item statistics and model scores."""
    snapshot = _snapshot(4, created_ms=1234)
    restored = Snapshot.loads(snapshot.dumps())
    assert restored is not None
    assert (restored.version, restored.created_ms, restored.offsets, restored.format) == (4, 1234, {0: 40}, FORMAT)
    assert restored.items.ctr("p1") == snapshot.items.ctr("p1")
    probe = {"ctr": 0.15, "similarity": 0.5, "position": 0.0}
    assert restored.model.score(probe) == snapshot.model.score(probe)
    assert restored.model.learned == snapshot.model.learned


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: Snapshot(1, 0, _model(), ItemStats(1.0), format=FORMAT + 1).dumps(), id="other-format"),
        pytest.param(lambda: pickle.dumps({"version": 1}), id="not-a-snapshot"),
        pytest.param(lambda: b"not a pickle", id="garbage"),
        pytest.param(lambda: pickle.dumps(Snapshot(1, 0, _model(), ItemStats(1.0)))[:40], id="truncated"),
    ],
)
def test_loads_returns_none_for_another_format(payload: Any) -> None:
    """A payload of another format, not a snapshot, or not a pickle at all loads as None rather than raising."""
    assert Snapshot.loads(payload()) is None


def _learner() -> Learner:
    # The constructor stores the connection; nothing connects until run().
    return Learner(LearningSettings(), KafkaConnection("127.0.0.1:1"), "model", "g", clock=lambda: 1000.0)


def _example(i: int, label: bool = True) -> Example:
    return Example(f"e{i}", "p1", {"ctr": 0.2 if label else 0.0, "position": 0.0}, label, 1.0, 1000 + i, True)


def test_learner_skips_offsets_the_restored_snapshot_holds() -> None:
    """After restore, examples at or below the snapshot's offset are skipped; later ones are learned."""
    learner = _learner()
    learner.restore(_snapshot(1))  # offsets {0: 10}
    learned = learner.model.learned
    for offset in (3, 9, 10):
        learner.learn(_example(offset), 0, offset)
    assert learner.model.learned == learned
    assert learner.items.views.get("p1") == pytest.approx(3.0)
    learner.learn(_example(11), 0, 11)
    learner.learn(_example(11), 0, 11)  # redelivered
    assert learner.model.learned == learned + 1
    assert learner.offsets == {0: 11}
    learner.learn(_example(0), 1, 0)  # another partition has its own offsets
    assert learner.offsets == {0: 11, 1: 0}


def test_learner_snapshot_only_when_something_new_was_learned() -> None:
    """snapshot() is None for a blank learner, right after restore, and right after a publish."""
    learner = _learner()
    assert learner.snapshot() is None
    learner.restore(_snapshot(1))
    assert learner.snapshot() is None
    learner.learn(_example(11), 0, 11)
    published = learner.snapshot()
    assert published is not None
    assert (published.version, published.offsets, published.created_ms) == (2, {0: 11}, 1_000_000)
    assert learner.snapshot() is None


def test_learner_snapshot_is_a_copy_of_the_model() -> None:
    """A published snapshot's model does not change as the learner keeps learning."""
    learner = _learner()
    learner.learn(_example(0), 0, 0)
    published = learner.snapshot()
    assert published is not None
    probe = _example(0).features
    expected = published.model.probability(probe)
    for offset in range(1, 30):
        learner.learn(_example(offset, label=offset % 2 == 0), 0, offset)
    assert published.model.probability(probe) == expected
    assert published.model.learned == 1


def test_learner_does_not_publish_an_unhealthy_model() -> None:
    """snapshot() is None, counted as 'rejected', when the model has non-finite weights; the version stays."""
    learner = _learner()
    learner.learn(_example(0), 0, 0)
    learner.model.pipeline["LogisticRegression"]._weights["ctr"] = math.nan
    before = _sample("streamrec_model_snapshots_total", outcome="rejected")
    assert learner.snapshot() is None
    assert learner.version == 0
    assert _sample("streamrec_model_snapshots_total", outcome="rejected") == before + 1


def test_an_example_emitted_again_at_a_new_offset_is_learned_once() -> None:
    """A join replay re-emits the same example id further down the topic: skipped, counted, offset still advances."""
    learner = _learner()
    before = _sample("streamrec_model_duplicate_examples_total")
    learner.learn(_example(0), 0, 0)
    learner.learn(_example(1), 0, 1)
    learner.learn(_example(0), 0, 2)  # the same example, emitted again
    assert learner.model.learned == 2
    assert learner.offsets == {0: 2}
    assert _sample("streamrec_model_duplicate_examples_total") == before + 1


def test_a_restored_learner_still_knows_the_recent_example_ids() -> None:
    """The snapshot carries the recent ids: after a restart a re-emitted example is still skipped."""
    learner = _learner()
    for offset in range(5):
        learner.learn(_example(offset), 0, offset)
    published = learner.snapshot()
    assert published is not None
    restored = _learner()
    restored.restore(Snapshot.loads(published.dumps()) or published)
    restored.learn(_example(3), 0, 5)  # re-emitted after the snapshot
    restored.learn(_example(5), 0, 6)
    assert restored.model.learned == 6


def test_a_snapshot_pickled_before_recent_ids_existed_restores_with_none() -> None:
    """Older snapshots lack the field: the class default (no ids) applies."""
    old = _snapshot(1)
    del old.__dict__["recent_examples"]
    restored = Snapshot.loads(pickle.dumps(old))
    assert restored is not None
    assert restored.recent_examples == b""
    learner = _learner()
    learner.restore(restored)
    assert len(learner.recent) == 0
