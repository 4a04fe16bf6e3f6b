"""The parking of events for unknown products: bounded, replay-safe, partition-aware, saved before it counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.events import Click, Purchase
from streams.parking import ParkedEvent, Parking

NOW_MS = 1_767_225_600_000


class _Sent:
    """A changelog topic that records what was sent and acknowledges at once."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, Any, Any]] = []

    async def send(
        self, *, key: str, value: Any, partition: int, value_serializer: Any, **_: Any
    ) -> asyncio.Future[None]:
        self.records.append((partition, key, value, value_serializer))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class _Table:
    """The parts of a faust table ``streams.changelog.write`` uses."""

    key_serializer = "json"
    value_serializer = "json"

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.changelog_topic = _Sent()


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
    table = _Table()
    parking = Parking(table, max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    assert asyncio.run(parking.park([parked("a", partition=3)])) == []
    assert [(p, k) for p, k, _, _ in table.changelog_topic.records] == [(3, "a")]
    asyncio.run(parking.park([parked("a", partition=3, parked_ms=NOW_MS + 999)]))
    assert len(table.changelog_topic.records) == 1, "a replayed event was parked twice"
    assert parking.waiting({3}, 10)[0].parked_ms == NOW_MS
    assert len(parking) == 1


def test_what_does_not_fit_comes_back_unparked() -> None:
    parking = Parking(_Table(), max_events=2, max_age_ms=1000)  # type: ignore[arg-type]
    overflow = asyncio.run(parking.park([parked("a"), parked("b"), parked("c")]))
    assert [e.event.event_id for e in overflow] == ["c"]
    assert len(parking) == 2


def test_waiting_gives_owned_partitions_oldest_first_and_release_writes_tombstones() -> None:
    table = _Table()
    parking = Parking(table, max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    asyncio.run(parking.park([parked("new", 0, NOW_MS + 5), parked("old", 0, NOW_MS), parked("other", 1, NOW_MS - 5)]))
    waiting = parking.waiting({0}, 10)
    assert [e.event.event_id for e in waiting] == ["old", "new"]
    assert [e.event.event_id for e in parking.waiting({0}, 1)] == ["old"]
    asyncio.run(parking.release(waiting, "applied"))
    assert set(table.data) == {"other"}
    assert table.changelog_topic.records[-2:] == [(0, "old", None, "raw"), (0, "new", None, "raw")]


@pytest.mark.parametrize(("waited_ms", "expired"), [(999, False), (1000, True)])
def test_an_event_expires_after_the_maximum_age(waited_ms: int, expired: bool) -> None:
    parking = Parking(_Table(), max_events=10, max_age_ms=1000)  # type: ignore[arg-type]
    assert parking.expired(parked("a"), NOW_MS + waited_ms) is expired
