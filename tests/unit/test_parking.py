"""The parking of events for unknown products: bounded, replay-safe, partition-aware, saved before it counts."""

from __future__ import annotations

import asyncio

import pytest

from streams.events import Click, Purchase
from streams.fakes import MemoryTable
from streams.parking import ParkedEvent, Parking

NOW_MS = 1_767_225_600_000


def parked(event_id: str, partition: int = 0, parked_ms: int = NOW_MS, purchase: bool = False) -> ParkedEvent:
    fields = {"event_id": event_id, "ts": NOW_MS, "schema_version": 1, "user_id": "u", "product_id": "p"}
    event = Purchase(**fields, quantity=2) if purchase else Click(**fields)
    return ParkedEvent(event, b'{"raw": true}', b"u", "clicks", partition, 17, parked_ms)


def test_an_event_round_trips_through_its_changelog_value() -> None:
    """Clicks and purchases come back equal, bytes and key included."""
    for event in (parked("a"), parked("b", purchase=True)):
        assert ParkedEvent.from_dict(event.to_dict()) == event
    keyless = ParkedEvent(parked("c").event, b"x", None, "clicks", 1, 2, NOW_MS)
    assert ParkedEvent.from_dict(keyless.to_dict()) == keyless


def test_parking_writes_the_changelog_of_the_source_partition_and_a_replay_keeps_the_first_time() -> None:
    table = MemoryTable()
    parking = Parking(table, max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    assert asyncio.run(parking.park([parked("a", partition=3)])) == []
    assert [(p, k) for p, k, _ in table.changelog_topic.acked] == [(3, "a")]
    asyncio.run(parking.park([parked("a", partition=3, parked_ms=NOW_MS + 999)]))
    assert len(table.changelog_topic.acked) == 1, "a replayed event was parked twice"
    assert parking.due({3}, NOW_MS + 999, 10)[0].parked_ms == NOW_MS
    assert len(parking) == 1


def test_what_does_not_fit_comes_back_unparked() -> None:
    parking = Parking(MemoryTable(), max_events=2, max_age_ms=1000)  # type: ignore[arg-type]
    overflow = asyncio.run(parking.park([parked("a"), parked("b"), parked("c")]))
    assert [e.event.event_id for e in overflow] == ["c"]
    assert len(parking) == 2


def test_due_gives_owned_partitions_oldest_first_and_release_writes_tombstones() -> None:
    """Due events of the owned partitions come earliest first; releasing them writes tombstones."""
    table = MemoryTable()
    parking = Parking(table, max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    asyncio.run(parking.park([parked("new", 0, NOW_MS + 5), parked("old", 0, NOW_MS), parked("other", 1, NOW_MS - 5)]))
    waiting = parking.due({0}, NOW_MS + 999, 10)
    assert [e.event.event_id for e in waiting] == ["old", "new"]
    assert [e.event.event_id for e in parking.due({0}, NOW_MS + 999, 1)] == ["old"]
    asyncio.run(parking.release(waiting, "applied"))
    assert set(table.data) == {"other"}
    assert table.changelog_topic.acked[-2:] == [(0, "old", None), (0, "new", None)]
    assert parking.due({0, 1}, NOW_MS + 999, 10)[0].event.event_id == "other"


@pytest.mark.parametrize(("waited_ms", "expired"), [(999, False), (1000, True)])
def test_an_event_expires_after_the_maximum_age(waited_ms: int, expired: bool) -> None:
    parking = Parking(MemoryTable(), max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    assert parking.expired(parked("a"), NOW_MS + waited_ms) is expired


def test_a_retry_tick_with_nothing_due_reads_no_parked_event() -> None:
    """Between retries no table value is read; a retry that found no product backs off, doubling to the cap."""
    table = MemoryTable()
    parking = Parking(table, max_events=100, max_age_ms=60_000, retry_ms=500, max_retry_ms=2000)  # type: ignore[arg-type]
    asyncio.run(parking.park([parked(f"e{n}", n % 2, NOW_MS) for n in range(50)]))
    table.data.reads = 0
    assert parking.due({0, 1}, NOW_MS + 499, 500) == []
    assert table.data.reads == 0, "a tick with nothing due read parked events"

    now = NOW_MS + 500
    retried = []
    for _ in range(5):
        waiting = parking.due({0, 1}, now, 500)
        assert len(waiting) == 50
        assert table.data.reads == 50 * (len(retried) + 1), "only the due events are read"
        parking.postpone(waiting, now)
        retried.append(now)
        now = min(parking.deadlines.get(e.event.event_id) or 0 for e in waiting)
    assert [b - a for a, b in zip(retried, [*retried[1:], now], strict=True)] == [1000, 2000, 2000, 2000, 2000]


def test_a_parked_event_is_retried_at_its_expiry_at_the_latest() -> None:
    """The backoff never carries a retry past the event's expiry, so it is dead-lettered on time."""
    parking = Parking(MemoryTable(), max_events=10, max_age_ms=1200, retry_ms=500, max_retry_ms=5000)  # type: ignore[arg-type]
    asyncio.run(parking.park([parked("a")]))
    parking.postpone(parking.due({0}, NOW_MS + 500, 10), NOW_MS + 500)
    assert parking.deadlines.get("a") == NOW_MS + 1200
    [event] = parking.due({0}, NOW_MS + 1200, 10)
    assert parking.expired(event, NOW_MS + 1200)


def test_after_a_recovery_every_stored_event_is_due_at_once() -> None:
    """Events recovered from the changelog (parked by another process) are retried on the next tick."""
    table = MemoryTable()
    parking = Parking(table, max_events=10, max_age_ms=60_000)  # type: ignore[arg-type]
    table.data["x"] = parked("x", partition=2, parked_ms=NOW_MS - 10_000).to_dict()
    assert parking.due({2}, NOW_MS, 10) == []
    asyncio.run(table.recovered())
    assert [e.event.event_id for e in parking.due({2}, NOW_MS, 10)] == ["x"]
