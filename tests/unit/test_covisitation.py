"""Co-visitation pairs and popularity folded from events, and the decayed per-product state they build."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.covisitation import HISTORY, MAX_NEIGHBORS, ItemDelta, ItemDeltas, ItemState, pair_weight

HALF_LIFE_MS = 1000.0
IDS = st.text("abcdef", min_size=1, max_size=3)
WEIGHTS = st.floats(0, 1e6, allow_nan=False)


def added(history: list[str], item_id: str, weight: float = 1.0, ts: int = 0) -> ItemDeltas:
    """The deltas of one event on ``item_id`` after ``history`` (oldest first)."""
    deltas = ItemDeltas()
    deltas.add(history, item_id, weight=weight, ts=ts)
    return deltas


@pytest.mark.parametrize("weight", [1.0, 3.0], ids=["click", "purchase"])
def test_pairs_are_symmetric_and_weighted_by_distance(weight: float) -> None:
    """Each earlier product pairs with the new one both ways, by the event's weight times ``pair_weight(distance)``."""
    deltas = added(["a", "b", "c"], "d", weight=weight)
    expected = {"c": weight * pair_weight(1), "b": weight * pair_weight(2), "a": weight * pair_weight(3)}
    assert deltas.items["d"].neighbors == pytest.approx(expected)
    for other, amount in expected.items():
        assert deltas.items[other].neighbors == pytest.approx({"d": amount})
    assert expected["c"] > expected["b"] > expected["a"] > 0


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (["a", "b", "a"], {"a": pair_weight(1), "b": pair_weight(2)}),
        (["a", "a", "a"], {"a": pair_weight(1)}),
        (["c", "a"], {"a": pair_weight(1)}),
        (["a", "c"], {"a": pair_weight(2)}),
    ],
    ids=["repeat-counts-at-its-newest", "only-repeats", "the-product-itself-oldest", "the-product-itself-newest"],
)
def test_a_repeated_product_in_history_counts_once(history: list[str], expected: dict[str, float]) -> None:
    """A product appearing several times in the history pairs once, at its newest distance; never with itself."""
    deltas = added(history, "c")
    assert deltas.items["c"].neighbors == pytest.approx(expected)


def test_only_the_last_history_products_pair() -> None:
    """Products older than the last ``HISTORY`` of the shopper's history get no pair."""
    history = [f"p{i}" for i in range(HISTORY + 5)]
    neighbors = added(history, "x").items["x"].neighbors
    assert set(neighbors) == set(history[-HISTORY:])
    assert neighbors[history[-HISTORY]] == pytest.approx(pair_weight(HISTORY))


def test_popularity_accumulates_on_the_touched_product_only() -> None:
    """Every event adds its weight to its product's popularity; being in someone's history adds none."""
    deltas = ItemDeltas()
    deltas.add([], "a", weight=1.0, ts=5)
    deltas.add(["a"], "b", weight=3.0, ts=9)
    deltas.add(["a", "b"], "b", weight=1.0, ts=7)
    assert deltas.items["a"].popularity == pytest.approx(1.0)
    assert deltas.items["b"].popularity == pytest.approx(4.0)
    assert deltas.items["a"].neighbors == pytest.approx({"b": 3.0 + pair_weight(2)})
    assert {item: delta.ts for item, delta in deltas.items.items()} == {"a": 9, "b": 9}


def test_an_empty_batch_is_falsy() -> None:
    """No events, no deltas: the caller sends nothing."""
    assert not ItemDeltas()
    assert added([], "a")


@pytest.mark.parametrize("half_lives", [1, 2, 5])
def test_item_state_halves_counts_per_half_life(half_lives: int) -> None:
    """Counts added earlier weigh 2^-n after n half-lives of event time, against a fresh one."""
    state = ItemState.new(HALF_LIFE_MS)
    state.apply(ItemDelta(popularity=4.0, neighbors={"old": 8.0}, ts=0))
    later = int(half_lives * HALF_LIFE_MS)
    state.apply(ItemDelta(popularity=1.0, neighbors={"new": 1.0}, ts=later))
    row = state.to_row("p")
    factor = 2.0**-half_lives
    assert (row.item_id, row.ref_ms) == ("p", later)
    assert row.popularity == pytest.approx(4.0 * factor + 1.0)
    assert row.neighbors == pytest.approx({"old": 8.0 * factor, "new": 1.0})


def test_a_late_delta_is_decayed_to_the_state_time() -> None:
    """A delta older than the state counts at its decayed weight: order of application does not matter."""
    forward, backward = ItemState.new(HALF_LIFE_MS), ItemState.new(HALF_LIFE_MS)
    first, second = ItemDelta(2.0, {"a": 2.0}, ts=0), ItemDelta(1.0, {"a": 1.0, "b": 1.0}, ts=3000)
    forward.apply(first)
    forward.apply(second)
    backward.apply(second)
    backward.apply(first)
    row, other = forward.to_row("p"), backward.to_row("p")
    assert (row.ref_ms, other.ref_ms) == (3000, 3000)
    assert [row.popularity, other.popularity] == pytest.approx([2.0 / 8 + 1.0] * 2)
    assert row.neighbors == pytest.approx(other.neighbors)


def test_neighbours_are_bounded_keeping_the_strongest() -> None:
    """However many products co-occur with one, its row serves the ``MAX_NEIGHBORS`` strongest, strongest first."""
    state = ItemState.new(HALF_LIFE_MS)
    count = 5 * MAX_NEIGHBORS
    for i in range(count):
        state.apply(ItemDelta(popularity=1.0, neighbors={f"n{i:04d}": float(i + 1)}, ts=0))
    assert len(state.neighbors) <= 2 * MAX_NEIGHBORS  # kept in memory
    neighbors = state.to_row("p").neighbors
    assert len(neighbors) == MAX_NEIGHBORS
    strongest = [f"n{i:04d}" for i in range(count - 1, count - 1 - MAX_NEIGHBORS, -1)]
    assert list(neighbors) == strongest
    assert state.to_row("p").popularity == pytest.approx(count)


def test_a_neighbour_just_below_the_cut_keeps_its_count() -> None:
    """A neighbour that slips below the served cut comes back with its count when it grows again."""
    state = ItemState.new(HALF_LIFE_MS)
    state.apply(ItemDelta(neighbors={f"n{i}": 10.0 for i in range(MAX_NEIGHBORS)} | {"slipped": 5.0}))
    assert "slipped" not in state.to_row("p").neighbors
    state.apply(ItemDelta(neighbors={"slipped": 6.0}))
    assert state.to_row("p").neighbors["slipped"] == pytest.approx(11.0)


@given(
    deltas=st.lists(
        st.builds(
            ItemDelta,
            popularity=WEIGHTS,
            neighbors=st.dictionaries(IDS, WEIGHTS, max_size=4),
            ts=st.integers(0, 10_000),
        ),
        max_size=6,
    )
)
def test_state_round_trips_through_json(deltas: list[ItemDelta]) -> None:
    """A state saved to JSON and loaded serves the same row, and keeps learning the same way."""
    state = ItemState.new(HALF_LIFE_MS)
    for delta in deltas:
        state.apply(delta)
    restored = ItemState.from_dict(json.loads(json.dumps(state.to_dict())), HALF_LIFE_MS)
    assert_rows_match(restored, state)
    more = ItemDelta(1.0, {"a": 1.0}, ts=20_000)
    state.apply(more)
    restored.apply(more)
    assert_rows_match(restored, state)


def assert_rows_match(actual: ItemState, expected: ItemState) -> None:
    """Both states serve the same row (up to float rounding)."""
    got, want = actual.to_row("p"), expected.to_row("p")
    assert (got.item_id, got.ref_ms) == (want.item_id, want.ref_ms)
    assert got.popularity == pytest.approx(want.popularity, rel=1e-9, abs=1e-300)
    assert got.neighbors == pytest.approx(want.neighbors, rel=1e-9, abs=1e-300)


@given(
    st.builds(
        ItemDelta,
        popularity=WEIGHTS,
        neighbors=st.dictionaries(IDS, WEIGHTS, max_size=4),
        ts=st.integers(0, 2**53),
    )
)
def test_delta_round_trips_through_json(delta: ItemDelta) -> None:
    """A valid delta sent on the item topic arrives unchanged."""
    assert ItemDelta.from_dict(json.loads(json.dumps(delta.to_dict()))) == delta


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -math.inf, -1.0, "3", None, [1.0]], ids=lambda v: f"{type(v).__name__}:{v}"
)
def test_delta_from_dict_drops_invalid_weights(bad: Any) -> None:
    """A NaN, infinite, negative or non-numeric weight is dropped, the valid ones kept."""
    delta = ItemDelta.from_dict({"n": bad, "co": {"bad": bad, "good": 2.0}, "ts": 7})
    assert delta == ItemDelta(popularity=0.0, neighbors={"good": 2.0}, ts=7)
    last = ItemDelta.from_dict({"n": 1.0, "co": {"good": 2.0, "also": 0.5, "bad": bad}, "ts": 7})
    assert last == ItemDelta(popularity=1.0, neighbors={"good": 2.0, "also": 0.5}, ts=7)


def test_weights_that_overflow_when_summed_are_each_kept() -> None:
    """The quick check sums the weights; a sum too large for a float is checked weight by weight, not dropped."""
    delta = ItemDelta.from_dict({"n": 1.0, "co": {"a": 1e308, "b": 1e308}, "ts": 7})
    assert delta.neighbors == {"a": 1e308, "b": 1e308}
