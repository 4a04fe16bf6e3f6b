"""The gap guard names the offsets a stream skipped, per partition; the batch buffer wakes its taker sparingly."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import Interval, IntervalTree

from streams import faust_adapter
from streams.batching import GapGuard, _Buffer, expected_offset, read_again

TP0 = TP("streamrec.clicks", 0)
TP1 = TP("streamrec.clicks", 1)


def skipped(guard: GapGuard, records: list[tuple[TP, int]]) -> list[tuple[int, int] | None]:
    """What the guard says of each record in turn."""
    return [guard.skipped(tp, offset) for tp, offset in records]


def test_contiguous_offsets_skip_nothing() -> None:
    """Offsets that grow by one, per partition, reveal no gap."""
    assert skipped(GapGuard(), [(TP0, 0), (TP1, 7), (TP0, 1), (TP1, 8), (TP0, 2)]) == [None] * 5


def test_a_jump_names_the_missing_range() -> None:
    """A record two or more past the last one names the range in between, end exclusive."""
    assert skipped(GapGuard(), [(TP0, 0), (TP0, 1), (TP0, 4), (TP0, 5)]) == [None, None, (2, 4), None]


def test_records_seen_again_reveal_nothing_and_do_not_move_the_mark_back() -> None:
    """Redelivered records (a refetch, a rebalance) pass; a later gap is still noticed from the highest offset."""
    assert skipped(GapGuard(), [(TP0, 5), (TP0, 6), (TP0, 3), (TP0, 4), (TP0, 7), (TP0, 9)]) == [
        None,
        None,
        None,
        None,
        None,
        (8, 9),
    ]


def test_partitions_are_tracked_apart() -> None:
    """A jump between two partitions' offsets is no gap."""
    assert skipped(GapGuard(), [(TP0, 100), (TP1, 3), (TP0, 101), (TP1, 5)]) == [None, None, None, (4, 5)]


def test_forget_drops_what_was_known_about_partitions() -> None:
    """After a rebalance the first record of a partition sets the mark without naming a gap."""
    guard = GapGuard()
    guard.skipped(TP0, 5)
    guard.forget()
    assert guard.skipped(TP0, 50) is None


def test_an_expected_first_offset_names_the_records_before_the_first_one_seen() -> None:
    """With the committed offset as the expectation, a first record past it reveals the range before it."""
    guard = GapGuard()
    assert not guard.knows(TP0)
    guard.expect(TP0, 10)
    assert guard.knows(TP0)
    assert skipped(guard, [(TP0, 14), (TP0, 15)]) == [(10, 14), None]
    guard.expect(TP1, 3)
    assert guard.skipped(TP1, 3) is None


def _app(**consumer: object) -> Any:
    """An app whose consumer has just the (private) faust attributes given."""
    return SimpleNamespace(consumer=SimpleNamespace(**consumer))


def test_the_expected_offset_is_faust_s_own_then_the_broker_s_then_unknown() -> None:
    """faust's committed offset when its seek ran; else the group's offset on the broker; else None."""

    async def broker(tp: TP) -> int | None:
        return {TP1: 7}.get(tp)

    async def unreachable(tp: TP) -> int | None:
        raise ConnectionError("broker down")

    app = _app(_committed_offset={TP0: 42})
    assert asyncio.run(expected_offset(app, TP0, broker)) == 42
    assert asyncio.run(expected_offset(app, TP1, broker)) == 7
    assert asyncio.run(expected_offset(_app(_committed_offset={}), TP0, broker)) is None
    assert asyncio.run(expected_offset(_app(_committed_offset={}), TP1, unreachable)) is None


def test_a_refetched_range_leaves_faust_s_gap_record_but_offsets_without_a_record_stay() -> None:
    """faust's gap [73, 77) (skipped 73..75, the revealing 76) goes but 74, which has no record; others stay."""
    gaps: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
    gaps[TP0] = IntervalTree([Interval(73, 77)])
    gaps[TP1] = IntervalTree([Interval(10, 20)])
    app = _app(_gap=gaps)
    faust_adapter.settle_gap(app, TP0, 73, 76, empty=[74])
    assert faust_adapter.gap_offsets(app, TP0) == [74]
    faust_adapter.settle_gap(app, TP1, 12, 14)
    assert sorted((i.begin, i.end) for i in gaps[TP1]) == [(10, 12), (15, 20)]
    # No gap filed by faust (the jump was past the committed offset): the empty offsets are filed.
    faust_adapter.settle_gap(app, TP("streamrec.searches", 0), 0, 5, empty=[0, 1, 2])
    assert faust_adapter.gap_offsets(app, TP("streamrec.searches", 0)) == [0, 1, 2]


def _record(offset: int) -> Any:
    return SimpleNamespace(offset=offset)


def test_a_failed_re_read_is_tried_again_until_it_succeeds_never_skipped() -> None:
    """The broker refuses the re-read twice: the stream waits, then gets the records (before: it went on without)."""
    calls = []

    async def flaky(tp: TP, start: int, end: int) -> list[Any]:
        calls.append((start, end))
        if len(calls) <= 2:
            raise ConnectionError("broker unreachable")
        return [_record(3), _record(5)]

    records = asyncio.run(read_again(flaky, TP0, TP0.topic, (3, 6), still_assigned=lambda: True, delays_s=[0.0]))
    assert [r.offset for r in records or []] == [3, 5]
    assert calls == [(3, 6)] * 3


def test_a_re_read_interrupted_by_a_rebalance_gives_up() -> None:
    """The partition may have moved: its next owner resumes from the last commit, which the gap never passed."""

    async def down(tp: TP, start: int, end: int) -> list[Any]:
        raise ConnectionError("broker unreachable")

    assert asyncio.run(read_again(down, TP0, TP0.topic, (3, 6), still_assigned=lambda: False, delays_s=[0.0])) is None


def test_offsets_read_again_are_committed_only_once_handled_and_empty_ones_never_hold_commits_back() -> None:
    """faust's own commit arithmetic: the gap it filed is settled, so 3..6 wait for their acks; 4 has no record."""
    # The base consumer's bookkeeping alone (no broker, no consumer thread).
    consumer: Any = FaustConsumer.__new__(FaustConsumer)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    app = SimpleNamespace(consumer=consumer)

    async def scenario() -> list[int | None]:
        consumer._committed_offset[TP0] = 0
        consumer._acked[TP0].extend([0, 1, 2])
        await consumer._add_gap(TP0, 3, 6)  # faust read 6 right after 2: offsets 3..5 (and 6) filed as a gap
        faust_adapter.settle_gap(app, TP0, 3, 6, empty=faust_adapter.offsets_without([3, 5], 3, 6))  # type: ignore[arg-type]
        first = consumer._new_offset(TP0)  # 0..2 done; 3 not yet handled
        consumer._committed_offset[TP0] = first
        consumer._acked[TP0].extend([3, 5, 6])  # the re-read records and the revealing one, handled
        return [first, consumer._new_offset(TP0)]

    assert asyncio.run(scenario()) == [3, 7]


def test_the_buffer_wakes_its_taker_for_the_first_event_and_when_full_not_for_each_event() -> None:
    """A wake-up per event cost more than the event's own work; the taker waits out its deadline instead."""

    async def run() -> list[bool]:
        buffer = _Buffer(capacity=3)
        woken = []
        for event in ("a", "b", "c"):
            buffer.wake.clear()
            await buffer.put(event)  # type: ignore[arg-type]
            woken.append(buffer.wake.is_set())
        return woken

    assert asyncio.run(run()) == [True, False, True]
