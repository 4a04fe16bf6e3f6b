"""Clicks and purchases of products not embedded yet wait here until the product arrives.

Catalog and behavior topics are consumed independently, so a click can reach
the worker before its product's vector is in the store (a new product, a
catalog backlog). Applying it then would lose the vector's contribution to
the shopper's profile for good. The event is parked instead, in a
changelogged table keyed by ``event_id`` in the partition of its source
event: the offset can be committed, a crash or a rebalance hands the parked
events to whichever worker owns the partition, and parking the same event
twice (a replay) keeps one entry. A timer retries the parked events that
are due, with backoff; those whose product is still unknown after
``park_max_s``, or that do not fit in ``park_max_events``, are dead-lettered
with reason ``unknown_product``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import TableT
from prometheus_client import Counter, Gauge

from streams import changelog
from streams.deadlines import Deadlines
from streams.events import Click, Purchase, RejectReason

log = logging.getLogger(__name__)

PARKED = Gauge(
    "streamrec_parked_events_waiting", "Events waiting for their product to be embedded (this worker's table)"
)
PARK_OUTCOMES = Counter(
    "streamrec_parked_events_total",
    "Events parked for an unknown product, and how parked events left (applied, expired, overflow)",
    ["outcome"],
)
UNKNOWN_PRODUCT: RejectReason = "unknown_product"

# The longest wait between two retries of one parked event. The catalog is
# consumed by whichever worker owns the product's partition, so a worker
# learns that a product arrived only by retrying; 5 s bounds how late a
# parked click is applied after its product, while a thousand parked events
# cost at most 200 product lookups a second.
MAX_RETRY_MS = 5000


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """A click or purchase waiting for its product, with what a dead letter needs to carry."""

    event: Click | Purchase
    raw: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    parked_ms: int

    def to_dict(self) -> dict[str, Any]:
        """The changelog value (JSON)."""
        return {
            "kind": "purchase" if isinstance(self.event, Purchase) else "click",
            "event": self.event.model_dump(mode="json"),
            "raw": base64.b64encode(self.raw).decode("ascii"),
            "key": None if self.key is None else base64.b64encode(self.key).decode("ascii"),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "parked_ms": self.parked_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParkedEvent:
        """Inverse of :meth:`to_dict`."""
        model = Purchase if data["kind"] == "purchase" else Click
        return cls(
            event=model.model_validate(data["event"]),
            raw=base64.b64decode(data["raw"]),
            key=None if data["key"] is None else base64.b64decode(data["key"]),
            topic=str(data["topic"]),
            partition=int(data["partition"]),
            offset=int(data["offset"]),
            parked_ms=int(data["parked_ms"]),
        )


class Parking:
    """The parked events of a worker, bounded in number and in waiting time.

    Each parked event has a next retry time, in memory only: first
    ``retry_ms`` after it was parked, then twice as long after each retry
    that still found no product, up to ``max_retry_ms``, and never later
    than its expiry. The retry timer reads only the events that are due, so
    a tick with nothing due reads no table value. After a recovery (a
    restart, a rebalance) every stored event is due at once.
    """

    def __init__(
        self,
        table: TableT[Any, Any],
        max_events: int,
        max_age_ms: int,
        *,
        retry_ms: int = 500,
        max_retry_ms: int = MAX_RETRY_MS,
    ) -> None:
        self.table = table
        self.max_events = max_events
        self.max_age_ms = max_age_ms
        self.retry_ms = retry_ms
        self.max_retry_ms = max(retry_ms, max_retry_ms)
        self.deadlines = Deadlines()
        self._retries: dict[str, int] = {}  # event_id -> retries that found no product
        table.on_recover(self.rebuild)

    def __len__(self) -> int:
        return len(self.table.data)

    async def park(self, events: Sequence[ParkedEvent]) -> list[ParkedEvent]:
        """Save events to the changelog (acknowledged by the broker); return those that did not fit.

        An event already parked (the same ``event_id`` again, after a replay)
        keeps its first parking time, so replays cannot keep it waiting forever.
        """
        fresh = [e for e in events if e.event.event_id not in self.table.data]
        room = max(0, self.max_events - len(self))
        kept, overflow = fresh[:room], fresh[room:]
        await changelog.write(self.table, [(e.partition, e.event.event_id, e.to_dict()) for e in kept])
        for parked in kept:
            self._schedule(parked.event.event_id, parked.partition, parked.parked_ms, parked.parked_ms)
        PARK_OUTCOMES.labels("parked").inc(len(kept))
        PARK_OUTCOMES.labels("overflow").inc(len(overflow))
        PARKED.set(len(self))
        return overflow

    def due(self, partitions: Collection[int], now_ms: int, limit: int) -> list[ParkedEvent]:
        """Up to ``limit`` parked events of ``partitions`` due for a retry at ``now_ms``, earliest due first."""
        events = []
        for event_id in self.deadlines.due(partitions, now_ms, limit):
            data = self.table.data.get(event_id)
            if data is None:  # released since (a stale index entry)
                self._forget(event_id)
            else:
                events.append(ParkedEvent.from_dict(data))
        return events

    def postpone(self, events: Sequence[ParkedEvent], now_ms: int) -> None:
        """Events retried at ``now_ms`` whose product is still unknown: back off before the next retry."""
        for parked in events:
            event_id = parked.event.event_id
            self._retries[event_id] = self._retries.get(event_id, 0) + 1
            self._schedule(event_id, parked.partition, parked.parked_ms, now_ms)

    def expired(self, event: ParkedEvent, now_ms: int) -> bool:
        """Whether ``event`` has waited as long as it may."""
        return now_ms - event.parked_ms >= self.max_age_ms

    async def release(self, events: Sequence[ParkedEvent], outcome: str) -> None:
        """Remove events (tombstones in the changelog), counting how they left."""
        await changelog.write(self.table, [(e.partition, e.event.event_id, None) for e in events])
        for parked in events:
            self._forget(parked.event.event_id)
        PARK_OUTCOMES.labels(outcome).inc(len(events))
        PARKED.set(len(self))

    async def rebuild(self) -> None:
        """Make every stored event due now (faust calls this after each recovery of the table)."""
        self._retries.clear()
        self.deadlines.rebuild(
            (str(event_id), int(data["partition"]), int(data["parked_ms"]))
            for event_id, data in self.table.data.items()
            if data is not None
        )
        log.info("parking: %d parked events due for a retry after recovery", len(self.deadlines))
        PARKED.set(len(self))

    def _schedule(self, event_id: str, partition: int, parked_ms: int, now_ms: int) -> None:
        backoff = min(self.max_retry_ms, self.retry_ms * 2 ** min(self._retries.get(event_id, 0), 30))
        self.deadlines.set(event_id, partition, min(now_ms + backoff, parked_ms + self.max_age_ms))

    def _forget(self, event_id: str) -> None:
        self.deadlines.discard(event_id)
        self._retries.pop(event_id, None)
