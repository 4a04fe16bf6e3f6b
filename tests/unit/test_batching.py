"""The gap guard names the offsets a stream skipped, per partition."""

from __future__ import annotations

from faust.types import TP

from streams.batching import GapGuard

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
