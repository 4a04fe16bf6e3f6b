"""Clicks and purchases of products not embedded yet wait here until the product arrives.

Catalog and behavior topics are consumed independently, so a click can reach
the worker before its product's vector is in the store (a new product, a
catalog backlog). Applying it then would lose the vector's contribution to
the shopper's profile for good. The event is parked instead, in a
changelogged table keyed by ``event_id`` in the partition of its source
event: the offset can be committed, a crash or a rebalance hands the parked
events to whichever worker owns the partition, and parking the same event
twice (a replay) keeps one entry. A timer retries the parked events; those
whose product is still unknown after ``park_max_s``, or that do not fit in
``park_max_events``, are dead-lettered with reason ``unknown_product``.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import TableT
from prometheus_client import Counter, Gauge

from streams import changelog
from streams.events import Click, Purchase, RejectReason

PARKED = Gauge(
    "streamrec_parked_events_waiting", "Events waiting for their product to be embedded (this worker's table)"
)
PARK_OUTCOMES = Counter(
    "streamrec_parked_events_total",
    "Events parked for an unknown product, and how parked events left (applied, expired, overflow)",
    ["outcome"],
)
UNKNOWN_PRODUCT: RejectReason = "unknown_product"


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
    """The parked events of a worker, bounded in number and in waiting time."""

    def __init__(self, table: TableT[Any, Any], max_events: int, max_age_ms: int) -> None:
        self.table = table
        self.max_events = max_events
        self.max_age_ms = max_age_ms

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
        PARK_OUTCOMES.labels("parked").inc(len(kept))
        PARK_OUTCOMES.labels("overflow").inc(len(overflow))
        PARKED.set(len(self))
        return overflow

    def waiting(self, partitions: Collection[int], limit: int) -> list[ParkedEvent]:
        """Up to ``limit`` parked events of the partitions this worker owns, oldest first."""
        # Runs every retry tick: pick on the stored dicts, decode only what is returned.
        owned = [data for data in self.table.data.values() if data["partition"] in partitions]
        oldest = heapq.nsmallest(limit, owned, key=lambda data: data["parked_ms"])
        return [ParkedEvent.from_dict(data) for data in oldest]

    def expired(self, event: ParkedEvent, now_ms: int) -> bool:
        """Whether ``event`` has waited as long as it may."""
        return now_ms - event.parked_ms >= self.max_age_ms

    async def release(self, events: Sequence[ParkedEvent], outcome: str) -> None:
        """Remove events (tombstones in the changelog), counting how they left."""
        await changelog.write(self.table, [(e.partition, e.event.event_id, None) for e in events])
        PARK_OUTCOMES.labels(outcome).inc(len(events))
        PARKED.set(len(self))
