"""The label join: which examples impressions, clicks and purchases produce, and when."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_learning.join import (
    CLICK_WEIGHT,
    MAX_IMPRESSIONS,
    MAX_PENDING,
    PURCHASE_WEIGHT,
    Example,
    JoinState,
)

WINDOW_MS = 1000


def _items(n: int = 4, prefix: str = "p") -> list[dict[str, Any]]:
    return [
        {"product_id": f"{prefix}{i}", "position": i, "features": {"position": math.log2(i), "ctr": i / 10}}
        for i in range(1, n + 1)
    ]


class Join:
    """One user's join, its state stored as JSON between calls as the Faust table stores it."""

    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def _call(self, method: str, *args: Any) -> list[Example]:
        state = JoinState(self.data, WINDOW_MS)
        examples: list[Example] = getattr(state, method)(*args)
        self.data = json.loads(json.dumps(state.data))
        return examples

    def impression(self, request_id: str, ts: int = 0, now_ms: int = 0, n: int = 4) -> list[Example]:
        return self._call("add_impression", request_id, ts, _items(n), now_ms)

    def click(self, request_id: str | None, product_id: str, now_ms: int = 0) -> list[Example]:
        return self._call("add_label", request_id, product_id, CLICK_WEIGHT, 10, now_ms)

    def purchase(self, request_id: str | None, product_id: str, now_ms: int = 0) -> list[Example]:
        return self._call("add_label", request_id, product_id, PURCHASE_WEIGHT, 20, now_ms)

    def close(self, now_ms: int) -> list[Example]:
        return self._call("close_expired", now_ms)

    @property
    def state(self) -> JoinState:
        return JoinState(self.data, WINDOW_MS)


def _labels(examples: list[Example]) -> set[tuple[str, bool, float, bool]]:
    """(product, label, weight, first) of each example, order aside."""
    return {(ex.product_id, ex.label, ex.weight, ex.first) for ex in examples}


def test_click_labels_the_item_and_the_ones_above_it_at_once() -> None:
    """A click is a weight-1 positive; unclicked items above it are negatives now, those below wait for the close."""
    join = Join()
    assert join.impression("r1") == []
    assert _labels(join.click("r1", "p3")) == {
        ("p3", True, 1.0, True),
        ("p1", False, 1.0, True),
        ("p2", False, 1.0, True),
    }
    assert _labels(join.close(WINDOW_MS)) == {("p4", False, 1.0, True)}


def test_examples_carry_the_logged_features_and_the_label_time() -> None:
    """An example trains on the feature values logged with the impression, at the label's timestamp."""
    join = Join()
    join.impression("r1")
    (positive,) = join.click("r1", "p1")
    assert positive.features == {"position": 0.0, "ctr": 0.1}
    assert positive.ts == 10
    assert Example.from_dict(json.loads(json.dumps(positive.to_dict()))) == positive


@pytest.mark.parametrize(
    ("purchase_request_id", "extra"),
    [("r1", 2.0), (None, 2.0)],
    ids=["names-impression", "no-request-id"],
)
def test_purchase_after_click_tops_the_weight_up_to_three(purchase_request_id: str | None, extra: float) -> None:
    """A purchase of a clicked item adds one positive of weight 2 (total 3), not a first view, and nothing else."""
    join = Join()
    join.impression("r1")
    join.click("r1", "p2")
    assert _labels(join.purchase(purchase_request_id, "p2")) == {("p2", True, extra, False)}
    assert _labels(join.close(WINDOW_MS)) == {("p3", False, 1.0, True), ("p4", False, 1.0, True)}


def test_purchase_alone_is_a_weight_three_positive() -> None:
    """A purchase never clicked first is one positive of weight 3 and makes the items above it negatives."""
    join = Join()
    join.impression("r1")
    assert _labels(join.purchase(None, "p2")) == {("p2", True, 3.0, True), ("p1", False, 1.0, True)}


def test_purchase_without_request_id_goes_to_the_latest_impression_showing_it() -> None:
    """With no request id, a purchase labels the newest open impression (by event time) that showed the product."""
    join = Join()
    join.impression("newest-showing", ts=300, n=2)
    join.impression("oldest", ts=100, n=2)
    join._call("add_impression", "newest-overall", 400, _items(2, prefix="q"), 0)
    join.impression("older", ts=200, n=2)
    assert {ex.example_id.split(":")[0] for ex in join.purchase(None, "p2")} == {"newest-showing"}


def test_purchase_without_request_id_goes_to_the_impression_opened_last_among_those_of_the_same_time() -> None:
    """Lists shown in the same millisecond (or second, in imported logs): the one opened last is the newest."""
    join = Join()
    join.impression("first", ts=100, n=2)
    join.impression("second", ts=100, n=2)
    join.impression("third-shows-other", ts=100, n=1)
    assert {ex.example_id.split(":")[0] for ex in join.purchase(None, "p2")} == {"second"}


def test_label_for_a_product_never_shown_is_ignored() -> None:
    """A purchase of a product no open impression showed produces nothing and waits for nothing."""
    join = Join()
    join.impression("r1")
    assert join.purchase(None, "elsewhere") == []
    assert join.click("r1", "elsewhere") == []
    assert join.state.data["pending"] == []


@pytest.mark.parametrize("label", ["click", "purchase"])
def test_duplicate_label_changes_nothing(label: str) -> None:
    """Repeating a click or a purchase emits nothing the second time and leaves the state as it was."""
    join = Join()
    join.impression("r1")
    getattr(join, label)("r1", "p3")
    state = json.dumps(join.data, sort_keys=True)
    assert getattr(join, label)("r1", "p3") == []
    assert json.dumps(join.data, sort_keys=True) == state


@pytest.mark.parametrize("other_impression_shows_it", [False, True])
def test_click_before_its_impression_waits_for_it(other_impression_shows_it: bool) -> None:
    """A click naming an unseen impression waits for that one, even if another open impression shows the item."""
    join = Join()
    if other_impression_shows_it:
        join.impression("r0")
    assert join.click("r1", "p3") == []
    assert len(join.state.data["pending"]) == 1
    examples = join.impression("r1", ts=5)
    assert {ex.example_id.split(":")[0] for ex in examples} == {"r1"}
    assert _labels(examples) == {("p3", True, 1.0, True), ("p1", False, 1.0, True), ("p2", False, 1.0, True)}
    assert join.state.data["pending"] == []


@pytest.mark.parametrize("closed_in_between", [True, False])
def test_pending_labels_expire_after_the_window(closed_in_between: bool) -> None:
    """A held click is forgotten once the window has passed, whether or not a close ran in between."""
    join = Join()
    join.click("r1", "p3", now_ms=0)
    if closed_in_between:
        join.close(WINDOW_MS)
        assert join.state.data["pending"] == []
    examples = join.impression("r1", now_ms=WINDOW_MS)
    assert not any(ex.label for ex in examples)


def test_pending_labels_are_bounded() -> None:
    """At most MAX_PENDING labels wait; the oldest are dropped first."""
    join = Join()
    for i in range(MAX_PENDING + 5):
        join.click(f"r{i}", "p1")
    pending = join.state.data["pending"]
    assert len(pending) == MAX_PENDING
    assert pending[0]["request_id"] == "r5"


def test_close_turns_unlabeled_items_into_negatives_and_forgets_the_impression() -> None:
    """At the deadline unlabeled items become first-view negatives at the impression's time; a replay stays closed."""
    join = Join()
    join.impression("r1", ts=7, now_ms=0)
    join.click("r1", "p2")
    assert join.close(WINDOW_MS - 1) == []
    closed = join.close(WINDOW_MS)
    assert _labels(closed) == {("p3", False, 1.0, True), ("p4", False, 1.0, True)}
    assert {ex.ts for ex in closed} == {7}
    assert join.state.impressions == {}
    assert join.impression("r1", ts=7, now_ms=WINDOW_MS) == []
    assert join.state.impressions == {}
    assert join.click("r1", "p4", now_ms=WINDOW_MS) == []
    assert join.close(3 * WINDOW_MS) == []


def _script(join: Join) -> list[Example]:
    examples = join.impression("r1", ts=1)
    examples += join.impression("r2", ts=2)
    examples += join.click("r1", "p2")
    examples += join.purchase(None, "p2")  # latest showing: r2
    examples += join.click("r1", "p2")
    examples += join.purchase("r1", "p4")
    return examples + join.close(WINDOW_MS)


def test_example_ids_are_unique_and_deterministic() -> None:
    """Example ids never repeat within a run and are the same when the same events are replayed."""
    first, second = [ex.example_id for ex in _script(Join())], [ex.example_id for ex in _script(Join())]
    assert first == second
    assert len(set(first)) == len(first) == 8


def test_state_is_plain_json_between_calls() -> None:
    """Storing the state as JSON between calls changes no example (the Faust table stores it so)."""

    class InMemory(Join):
        def __init__(self) -> None:
            super().__init__()
            self.state_object = JoinState(None, WINDOW_MS)

        def _call(self, method: str, *args: Any) -> list[Example]:
            examples: list[Example] = getattr(self.state_object, method)(*args)
            return examples

    kept = InMemory()
    assert _script(kept) == _script(Join())
    assert json.loads(json.dumps(kept.state_object.data)) == kept.state_object.data


def test_open_impressions_are_bounded_by_closing_the_oldest() -> None:
    """Past MAX_IMPRESSIONS the oldest open impression is closed early: unlabeled items become negatives."""
    join = Join()
    for i in range(MAX_IMPRESSIONS):
        assert join.impression(f"r{i}", ts=1000 + i, n=1) == []
    evicted = join.impression("late-but-old", ts=0, n=2) + join.impression("new", ts=5000, n=1)
    assert len(join.state.impressions) == MAX_IMPRESSIONS
    assert {(ex.example_id, ex.first) for ex in evicted} == {
        ("late-but-old:p1:neg", True),
        ("late-but-old:p2:neg", True),
        ("r0:p1:neg", True),
    }
    assert join.impression("r0", ts=1000, n=1) == []
    assert "r0" not in join.state.impressions


def test_next_deadline_is_the_earliest_open_window_end() -> None:
    """next_deadline is None with nothing open, else the earliest open impression's deadline."""
    join = Join()
    assert join.state.next_deadline() is None
    join.impression("r1", now_ms=100)
    join.impression("r2", now_ms=50)
    assert join.state.next_deadline() == 50 + WINDOW_MS
    join.close(50 + WINDOW_MS)
    assert join.state.next_deadline() == 100 + WINDOW_MS
    join.close(100 + WINDOW_MS)
    assert join.state.next_deadline() is None


N_ITEMS = 4
LABELS = st.lists(
    st.tuples(
        st.sampled_from(["click", "purchase"]),
        st.integers(1, N_ITEMS),
        st.booleans(),  # whether the label names the impression
    ),
    max_size=12,
)


@given(labels=LABELS, data=st.data())
def test_any_interleaving_gives_one_view_per_item_and_whole_label_weights(
    labels: list[tuple[str, int, bool]], data: st.DataObject
) -> None:
    """In any arrival order, then a close: each shown item is viewed once and gets positive weight 0, 1 or 3."""
    join = Join()
    examples: list[Example] = []
    impression_at = data.draw(st.integers(0, len(labels)), label="impression_at")
    for i, (kind, position, named) in enumerate([*labels, ("impression", 0, False)]):
        if i == impression_at:
            examples += join.impression("r1", n=N_ITEMS)
        if kind != "impression":
            examples += getattr(join, kind)("r1" if named else None, f"p{position}")
    examples += join.close(WINDOW_MS)
    shown = {f"p{i}" for i in range(1, N_ITEMS + 1)}
    assert Counter(ex.product_id for ex in examples if ex.first) == Counter(shown)
    positive = dict.fromkeys(shown, 0.0)
    for ex in examples:
        positive[ex.product_id] += ex.weight if ex.label else 0.0
    assert set(positive.values()) <= {0.0, 1.0, 3.0}
    assert len({ex.example_id for ex in examples}) == len(examples)
