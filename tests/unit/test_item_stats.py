"""Item statistics: smoothed CTR, decayed popularity and the memory bound."""

from __future__ import annotations

import pytest

from online_learning.item_stats import PRIOR_CLICKS, PRIOR_SKIPS, ItemStats

HALF_LIFE_S = 10.0
HALF_LIFE_MS = int(HALF_LIFE_S * 1000)


def test_unseen_item_has_the_prior_ctr_and_no_popularity() -> None:
    """An item never shown has CTR 0.05, the prior, and popularity 0."""
    stats = ItemStats(HALF_LIFE_S)
    stats.record("other", viewed=3.0, clicked=1.0, at_ms=0)
    assert stats.ctr("unseen") == pytest.approx(0.05) == PRIOR_CLICKS / (PRIOR_CLICKS + PRIOR_SKIPS)
    assert stats.popularity("unseen") == 0.0


def test_ctr_rises_with_clicks() -> None:
    """With the same views, each more click gives a higher CTR, the smoothed (clicks + a) / (views + a + b)."""
    ctrs = []
    for clicks in range(5):
        stats = ItemStats(HALF_LIFE_S)
        stats.record("p", viewed=10.0, clicked=float(clicks), at_ms=0)
        ctrs.append(stats.ctr("p"))
        assert ctrs[-1] == pytest.approx((clicks + 0.5) / (10 + 10))
    assert ctrs == sorted(set(ctrs))


def test_a_short_record_does_not_outrank_a_long_one() -> None:
    """One click in two views scores below 40 clicks in 100: the prior pulls short records towards 5 %."""
    stats = ItemStats(HALF_LIFE_S)
    stats.record("lucky", viewed=2.0, clicked=1.0, at_ms=0)
    stats.record("proven", viewed=100.0, clicked=40.0, at_ms=0)
    assert stats.ctr("lucky") < stats.ctr("proven")


LATER_ACTIVITY = {"view": (1.0, 0.0), "click": (0.0, 1.0), "both": (1.0, 1.0)}


@pytest.mark.parametrize(("viewed", "clicked"), LATER_ACTIVITY.values(), ids=LATER_ACTIVITY.keys())
@pytest.mark.parametrize("half_lives", [1, 2, 5])
def test_popularity_decays_with_the_half_life(half_lives: int, viewed: float, clicked: float) -> None:
    """An item's popularity halves every half-life, whatever other items were viewed or clicked meanwhile."""
    stats = ItemStats(HALF_LIFE_S)
    stats.record("p", viewed=1.0, clicked=4.0, at_ms=0)
    stats.record("other", viewed=viewed, clicked=clicked, at_ms=half_lives * HALF_LIFE_MS)
    assert stats.popularity("p") == pytest.approx(4.0 * 2**-half_lives)


@pytest.mark.parametrize(("viewed", "clicked"), LATER_ACTIVITY.values(), ids=LATER_ACTIVITY.keys())
def test_ctr_decays_views_and_clicks_alike(viewed: float, clicked: float) -> None:
    """Time decays an item's views and clicks alike, so its CTR drifts towards the prior, never above it."""
    stats = ItemStats(HALF_LIFE_S)
    stats.record("p", viewed=10.0, clicked=1.0, at_ms=0)
    stats.record("other", viewed=viewed, clicked=clicked, at_ms=10 * HALF_LIFE_MS)
    decay = 2**-10
    assert stats.ctr("p") == pytest.approx((1.0 * decay + 0.5) / (10.0 * decay + 10.0))


def test_out_of_order_records_count_at_their_own_time() -> None:
    """A view recorded late, with an older timestamp, counts as decayed to now."""
    stats = ItemStats(HALF_LIFE_S)
    stats.record("p", viewed=1.0, clicked=1.0, at_ms=HALF_LIFE_MS)
    stats.record("p", viewed=0.0, clicked=2.0, at_ms=0)
    assert stats.popularity("p") == pytest.approx(2.0)


def test_prune_bounds_memory_and_keeps_the_busiest_items() -> None:
    """prune(keep) leaves at most ``keep`` items per counter, the most viewed and the most clicked."""
    stats = ItemStats(HALF_LIFE_S)
    for i in range(20):
        stats.record(f"p{i}", viewed=float(i + 1), clicked=float(20 - i), at_ms=0)
    stats.prune(5)
    assert {name for name, _ in stats.views.items()} == {f"p{i}" for i in range(15, 20)}
    assert {name for name, _ in stats.clicks.items()} == {f"p{i}" for i in range(5)}
    assert stats.ctr("p10") == pytest.approx(0.05)  # forgotten entirely: back to the prior
    assert stats.popularity("p0") == 20.0
