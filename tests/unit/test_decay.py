"""Exponentially decayed scores: half-life math, order independence, normalising and pruning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_learning.decay import DecayedScores

HALF_LIFE_MS = 1000


@pytest.mark.parametrize(
    ("elapsed_ms", "expected"),
    [(0, 1.0), (500, 2**-0.5), (1000, 0.5), (2000, 0.25), (10_000, 2**-10)],
)
def test_score_halves_every_half_life(elapsed_ms: int, expected: float) -> None:
    """A score read ``elapsed_ms`` after it was added is scaled by 2^(-elapsed/half-life)."""
    scores = DecayedScores(HALF_LIFE_MS)
    scores.add("shoes", 1.0, at_ms=5000)
    assert scores.get("shoes", at_ms=5000 + elapsed_ms) == pytest.approx(expected)


def test_later_add_decays_earlier_scores_to_the_new_reference_time() -> None:
    """Adding at a later time decays every stored score to that time and moves the reference."""
    scores = DecayedScores(HALF_LIFE_MS)
    scores.add("shoes", 4.0, at_ms=0)
    scores.add("bags", 1.0, at_ms=0)
    scores.add("shoes", 1.0, at_ms=2000)
    assert scores.ref_ms == 2000
    assert dict(scores.items()) == pytest.approx({"shoes": 2.0, "bags": 0.25})


def test_reading_before_the_reference_time_does_not_grow_scores() -> None:
    """get() at or before the reference time returns the stored score, never an undecayed one."""
    scores = DecayedScores(HALF_LIFE_MS)
    scores.add("shoes", 1.0, at_ms=3000)
    assert scores.get("shoes", at_ms=0) == scores.get("shoes") == 1.0
    assert scores.get("unknown") == 0.0


EVENTS = st.lists(
    st.tuples(st.sampled_from(["shoes", "bags", "hats"]), st.floats(0.01, 100), st.integers(0, 20 * HALF_LIFE_MS)),
    min_size=1,
    max_size=12,
)


@given(events=EVENTS, data=st.data())
def test_out_of_order_adds_equal_in_order_adds(events: list[tuple[str, float, int]], data: st.DataObject) -> None:
    """Applying the same events in any order gives the same scores and reference time."""
    shuffled = data.draw(st.permutations(events))
    in_order, out_of_order = DecayedScores(HALF_LIFE_MS), DecayedScores(HALF_LIFE_MS)
    for name, amount, at_ms in sorted(events, key=lambda event: event[2]):
        in_order.add(name, amount, at_ms)
    for name, amount, at_ms in shuffled:
        out_of_order.add(name, amount, at_ms)
    assert out_of_order.ref_ms == in_order.ref_ms == max(at for _, _, at in events)
    expected = dict(in_order.items())
    assert dict(out_of_order.items()) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_normalized_divides_by_the_peak_highest_first() -> None:
    """normalized() scales the top score to 1, orders highest first and cuts to ``top``."""
    scores = DecayedScores(HALF_LIFE_MS, {"bags": 1.0, "shoes": 4.0, "hats": 2.0})
    assert scores.normalized() == {"shoes": 1.0, "hats": 0.5, "bags": 0.25}
    assert list(scores.normalized()) == ["shoes", "hats", "bags"]
    assert scores.normalized(top=2) == {"shoes": 1.0, "hats": 0.5}


@pytest.mark.parametrize("stored", [{}, {"shoes": 0.0}, {"shoes": -1.0}], ids=["empty", "zero", "negative"])
def test_normalized_is_empty_without_a_positive_peak(stored: dict[str, float]) -> None:
    """Without a positive top score there is nothing to normalise by, so the result is empty."""
    assert DecayedScores(HALF_LIFE_MS, stored).normalized() == {}


@pytest.mark.parametrize(("keep", "expected"), [(2, {"shoes", "hats"}), (3, {"shoes", "hats", "bags"}), (5, None)])
def test_prune_keeps_the_highest_scores(keep: int, expected: set[str] | None) -> None:
    """prune(keep) drops all but the ``keep`` highest scores and leaves smaller sets alone."""
    stored = {"bags": 1.0, "shoes": 4.0, "hats": 2.0}
    scores = DecayedScores(HALF_LIFE_MS, stored)
    scores.prune(keep)
    assert dict(scores.items()) == {name: stored[name] for name in (expected or stored)}


def test_constructor_restores_scores_and_reference_time() -> None:
    """Scores saved with their reference time are restored and keep decaying from it."""
    scores = DecayedScores(HALF_LIFE_MS, {"shoes": 1.0}, ref_ms=7000)
    assert scores.ref_ms == 7000
    assert scores.get("shoes", at_ms=8000) == pytest.approx(0.5)


@pytest.mark.parametrize("half_life_ms", [0, -1.0, math.nan])
def test_invalid_half_life_raises(half_life_ms: float) -> None:
    """A half-life that is not a positive number is refused at construction."""
    with pytest.raises(ValueError, match="half_life_ms"):
        DecayedScores(half_life_ms)


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["shoes", "bags", "hats"]), st.floats(0.01, 100), st.integers(0, 300 * HALF_LIFE_MS)),
        min_size=1,
        max_size=20,
    )
)
def test_scores_equal_the_sum_of_decayed_increments_across_landmark_moves(events: list[tuple[str, float, int]]) -> None:
    """Over spans of hundreds of half-lives (the landmark moves), every score is the plain sum it should be."""
    scores = DecayedScores(HALF_LIFE_MS)
    for name, amount, at_ms in events:
        scores.add(name, amount, at_ms)
    ref = max(at_ms for _, _, at_ms in events)
    assert scores.ref_ms == ref
    for name in {name for name, _, _ in events}:
        expected = sum(a * 2 ** ((t - ref) / HALF_LIFE_MS) for n, a, t in events if n == name)
        assert scores.get(name) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_a_pickle_from_before_the_landmark_loads_with_its_scores() -> None:
    """Snapshots pickled when scores were stored as of the reference time still load (slot state)."""
    old = DecayedScores.__new__(DecayedScores)
    old.__setstate__((None, {"_half_life_ms": 1000.0, "_scores": {"shoes": 2.0}, "_ref_ms": 5000}))
    assert old.get("shoes") == 2.0
    assert old.get("shoes", at_ms=6000) == pytest.approx(1.0)
    old.add("shoes", 1.0, at_ms=6000)
    assert old.get("shoes") == pytest.approx(2.0)
    assert len(old) == 1


@given(events=st.lists(st.tuples(st.sampled_from("abc"), st.floats(0.1, 10), st.integers(0, 10_000)), max_size=20))
def test_items_at_equals_get_of_every_name(events: list[tuple[str, float, int]]) -> None:
    """``items_at`` reads every score as ``get`` does, before, at and after the reference time."""
    scores = DecayedScores(half_life_ms=1000)
    for name, amount, at_ms in events:
        scores.add(name, amount, at_ms)
    for at_ms in (0, scores.ref_ms, scores.ref_ms + 2500):
        assert dict(scores.items_at(at_ms)) == {name: scores.get(name, at_ms) for name, _ in scores.items()}


@given(
    batches=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from("abcd"), st.floats(0.0, 10.0), max_size=4),
            st.integers(0, 2_000_000),
        ),
        max_size=12,
    )
)
def test_add_many_gives_exactly_the_scores_of_one_add_per_name(batches: list[tuple[dict[str, float], int]]) -> None:
    """The bulk form the item stream uses is the per-name form, bit for bit, across landmark moves too."""
    one, many = DecayedScores(half_life_ms=10_000), DecayedScores(half_life_ms=10_000)
    for amounts, at_ms in batches:
        for name, amount in amounts.items():
            one.add(name, amount, at_ms)
        many.add_many(amounts, at_ms)
    assert many.__getstate__() == one.__getstate__()
