"""The label-join agent writes only states that changed, and its expiry timer reads only states that are due."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_learning.join import CLICK_WEIGHT, JoinState
from online_learning.settings import LearningSettings
from streams.events import Click, Impression, Purchase, Rejection
from streams.fakes import MemoryTable, MemoryTopic
from streams.labels import LabelJoin, join_batch
from streams.settings import StreamSettings

WINDOW_MS = 1000
T0_MS = 1_767_225_600_000
Event = Impression | Click | Purchase


def impression(user: str, request_id: str, products: Sequence[str] = ("p1", "p2", "p3")) -> Impression:
    items = [{"product_id": p, "position": n, "features": {"similarity": 0.5}} for n, p in enumerate(products, 1)]
    return Impression.model_validate(
        {
            "event_id": request_id,
            "ts": T0_MS,
            "schema_version": 1,
            "user_id": user,
            "surface": "search",
            "items": items,
        }
    )


def click(user: str, product: str, request_id: str | None = None, event_id: str | None = None) -> Click:
    return Click(
        event_id=event_id or f"c-{user}-{product}-{request_id}",
        ts=T0_MS,
        schema_version=1,
        user_id=user,
        product_id=product,
        request_id=request_id,
    )


def empty(_: str) -> JoinState:
    return JoinState(None, WINDOW_MS)


def test_clicks_with_nothing_to_join_change_no_state() -> None:
    """Clicks without a request id, of shoppers with no impression, leave no state to write and no example."""
    joined = join_batch([(0, click(f"u{n}", "p1")) for n in range(5)], empty, T0_MS)
    assert (joined.examples, joined.changed) == ([], [])


def test_a_click_on_a_product_not_shown_leaves_the_stored_state_unwritten() -> None:
    """A shopper with an open impression clicking something else: the state is not written again."""
    state = JoinState(None, WINDOW_MS)
    state.add_impression("r1", T0_MS, [i.model_dump() for i in impression("u", "r1").items], T0_MS)
    stored = json.loads(json.dumps(state.data))
    joined = join_batch(
        [(2, click("u", "elsewhere"))], lambda _: JoinState(json.loads(json.dumps(stored)), 1000), T0_MS
    )
    assert joined.changed == []


def test_impressions_labels_and_waiting_clicks_are_written_once_per_shopper() -> None:
    """What changes a state is written, once per shopper per batch, with the partition of its events."""
    batch: list[tuple[int, Event]] = [
        (1, impression("a", "r1")),
        (1, click("a", "p2", "r1")),
        (3, click("b", "p1", "r-not-seen-yet")),  # waits for its impression
        (0, click("c", "p1")),  # nothing to join
    ]
    joined = join_batch(batch, empty, T0_MS)
    assert [(user, partition) for user, _, partition in joined.changed] == [("a", 1), ("b", 3)]
    assert {(ex.product_id, ex.label) for _, ex in joined.examples} == {("p2", True), ("p1", False)}


OPS = st.lists(
    st.tuples(
        st.sampled_from(["impression", "click", "purchase", "close"]),
        st.sampled_from(["r1", "r2", None]),
        st.sampled_from(["p1", "p2", "p3", "p9"]),
        st.integers(0, 3 * WINDOW_MS),  # now, ms after T0
    ),
    max_size=25,
)


@given(ops=OPS)
def test_changed_is_true_exactly_when_the_stored_state_differs(ops: list[tuple[str, str | None, str, int]]) -> None:
    """After any call, ``changed`` says whether the JSON the table would store differs from before."""
    data: dict[str, Any] | None = None
    for kind, request_id, product, offset_ms in ops:
        before = json.dumps(data, sort_keys=True) if data is not None else None
        state = JoinState(json.loads(before) if before is not None else None, WINDOW_MS)
        now_ms = T0_MS + offset_ms
        if kind == "impression":
            shown = [i.model_dump() for i in impression("u", request_id or "r0").items]
            state.add_impression(request_id or "r0", T0_MS, shown, now_ms)
        elif kind == "close":
            state.close_expired(now_ms)
        else:
            state.add_label(request_id, product, CLICK_WEIGHT if kind == "click" else 3.0, T0_MS, now_ms)
        after = json.dumps(state.data, sort_keys=True)
        fresh = before is None and after == json.dumps(JoinState(None, WINDOW_MS).data, sort_keys=True)
        assert state.changed == (after != before and not fresh)
        data = state.data if state.changed else data


class Clock:
    """A settable wall clock in seconds."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


async def _no_dead_letters(_: Any, rejection: Rejection, agent: str) -> None:
    raise AssertionError(f"{agent} dead-lettered {rejection}")


def build(clock: Clock) -> tuple[LabelJoin, MemoryTable, MemoryTopic]:
    """A label join on an app that is never started, with an in-memory table and examples topic."""
    table, examples = MemoryTable("label-join"), MemoryTopic("examples")
    labels = LabelJoin(
        faust.App("unit-labels", store="memory://", autodiscover=False),
        StreamSettings(),
        LearningSettings(attribution_window_s=WINDOW_MS / 1000),
        _no_dead_letters,
        clock=clock,
        table=table,  # type: ignore[arg-type]
        examples=examples,  # type: ignore[arg-type]
    )
    return labels, table, examples


def source(partition: int) -> Any:
    """The raw event a decoded event came from, as far as the join looks at it."""
    return SimpleNamespace(message=SimpleNamespace(partition=partition))


def test_the_agent_writes_no_changelog_record_for_clicks_with_nothing_to_join() -> None:
    """A batch of clicks without a request id, from shoppers never shown anything, sends nothing to the changelog."""
    labels, table, examples = build(Clock(T0_MS))
    asyncio.run(labels.apply([(source(n % 4), click(f"u{n}", "p1")) for n in range(20)]))
    assert table.changelog_topic.acked == [], "label-join records for clicks that joined nothing"
    assert (dict(table.data), examples.acked) == ({}, [])


def test_the_expiry_tick_reads_no_state_when_nothing_is_due_and_closes_exactly_the_due_ones() -> None:
    """With impressions open, a tick before any deadline reads no table value; at a deadline only those close."""
    clock = Clock(T0_MS)
    labels, table, examples = build(clock)

    async def scenario() -> None:
        await labels.apply([(source(n), impression(f"u{n}", f"r{n}")) for n in range(3)])
        clock.now_ms = T0_MS + 400
        await labels.apply([(source(3), impression("late", "r-late"))])
        table.data.reads = 0
        clock.now_ms = T0_MS + WINDOW_MS - 1
        assert await labels.close_due({0, 1, 2, 3}) == 0
        assert table.data.reads == 0, "the tick read states although none was due"

        clock.now_ms = T0_MS + WINDOW_MS
        assert await labels.close_due({0, 1, 3}) == 2  # u2's partition is not this worker's
        assert table.data.reads == 2
        closed = {json.loads(value)["example_id"].split(":")[0] for _, _, value in examples.acked}
        assert closed == {"r0", "r1"}
        assert [key for _, key, _ in table.changelog_topic.acked[-2:]] == ["u0", "u1"]

        table.data.reads = 0
        assert await labels.close_due({0, 1, 3}) == 0
        assert table.data.reads == 0, "closed states were read again"
        clock.now_ms = T0_MS + 400 + WINDOW_MS
        assert await labels.close_due({0, 1, 3}) == 1  # "late"

    asyncio.run(scenario())


def test_after_a_recovery_the_index_is_rebuilt_from_the_table() -> None:
    """States recovered from the changelog (not written by this process) are closed when due."""
    clock = Clock(T0_MS)
    labels, table, examples = build(clock)
    state = JoinState(None, WINDOW_MS)
    state.add_impression("r9", T0_MS, [i.model_dump() for i in impression("u9", "r9").items], T0_MS)
    table.data["u9"] = {**state.data, "partition": 2}
    asyncio.run(table.recovered())
    clock.now_ms = T0_MS + WINDOW_MS
    assert asyncio.run(labels.close_due({2})) == 1
    assert len(examples.acked) == 3
    assert table.data["u9"]["impressions"] == {}


@pytest.mark.parametrize("label", ["click", "purchase"])
def test_a_label_joined_in_a_batch_is_written_with_its_examples(label: str) -> None:
    """The state that a label changed is written after its examples, in the partition of the label's events."""
    labels, table, examples = build(Clock(T0_MS))
    event: Event = (
        click("u", "p2", "r1")
        if label == "click"
        else Purchase(event_id="b1", ts=T0_MS, schema_version=1, user_id="u", product_id="p2", quantity=1)
    )
    asyncio.run(labels.apply([(source(1), impression("u", "r1")), (source(1), event)]))
    assert [(partition, key) for partition, key, _ in table.changelog_topic.acked] == [(1, "u")]
    assert len(examples.acked) == 2
