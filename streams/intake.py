"""Records of the busiest topics taken from faust's fetches in bulk, handed out in batches.

faust delivers a record through a path built for one record at a time: a
message object, a task to await its callback, an event, a queue, a stream
step and an acknowledgement each. That path alone cost 188 us of CPU per
record, 16 times a bare aiokafka loop (``bench/consume.py``), before any of
streamrec's own work. Here the records of the bulk topics (the behavior
topics) are taken out of each fetch as faust makes it and buffered, and an
agent takes them in batches; once a batch is handled its offsets are
acknowledged to faust's commit bookkeeping in one step.

faust still owns everything else: the group, the assignment (so the tables
stay co-partitioned with the topics), table recovery, commits, and every
other topic. Where this reaches into faust is in ``streams.faust_adapter``.

Offsets are safe because of these rules:
- a batch is acknowledged only if no rebalance came since it was handed
  out; the records of an older generation that wait are dropped unhandled,
  and so are records fetched while partitions are being revoked or for a
  partition no longer assigned (whoever owns them now reads them from the
  committed offset);
- the first record of a partition in a generation is checked against where
  the group resumes it (faust's committed offset, else the broker's, else
  the first offset the broker holds); a jump there or between records is
  read again with a consumer of its own before the record after it is
  buffered: records are found there (dropped above, or fetched before
  faust's seek) or none are (compaction, transaction markers), and offsets
  without a record are filed as done so they never hold commits back;
- records at offsets below the next one expected (a seek back) were buffered
  or handled already and are dropped;
- records of a fetch that began before a rebalance and ended after it are
  taken for the partitions assigned now, under those same checks: faust may
  have seeked the partition back before the fetch returned, and the last
  records of a quiet partition would otherwise never come again and hold
  its commits back (seen in a kill -9 soak: two records left behind on each
  of two partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import TP, AppT, EventT
from prometheus_client import Counter

from streams import faust_adapter
from streams.batching import Committed, Refetch, expected_offset, read_again

log = logging.getLogger(__name__)

DROPPED = Counter(
    "streamrec_intake_dropped_total",
    "Records fetched but not handled here because a rebalance came first (read again from the committed offset)",
    ["topic"],
)


class Delivered:
    """One record of a bulk topic, with the fields the handlers read.

    Shaped like a faust event for those fields (``event.value``,
    ``event.message.topic`` ...), so the handlers take either.
    """

    __slots__ = ("key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(
        self, topic: str, partition: int, offset: int, *, key: bytes | None, value: bytes | None, timestamp: float
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp  # seconds, as faust's messages have it

    @property
    def message(self) -> Delivered:
        """The record itself (a faust event keeps these fields on its message)."""
        return self

    @property
    def tp(self) -> TP:
        """The record's topic and partition."""
        return TP(self.topic, self.partition)


@dataclass(slots=True)
class Batch:
    """Records handed out together, all fetched within one consumer generation."""

    generation: int
    records: list[Delivered]

    def offsets(self) -> dict[TP, list[int]]:
        """The batch's offsets per partition."""
        out: dict[TP, list[int]] = {}
        for record in self.records:
            out.setdefault(TP(record.topic, record.partition), []).append(record.offset)
        return out


# What the handlers take: a faust event (the other agents' topics) or a record of the intake.
RawEvent = EventT[bytes] | Delivered


def _delivered(record: Any) -> Delivered:
    timestamp = record.timestamp / 1000.0 if record.timestamp is not None else 0.0
    return Delivered(
        record.topic, record.partition, record.offset, key=record.key, value=record.value, timestamp=timestamp
    )


class Intake:
    """The bulk topics' records between faust's fetch and the agent that handles them.

    ``install`` hooks it into a started app's consumer; ``batches`` hands
    them out; ``done`` acknowledges a handled batch.
    """

    def __init__(
        self,
        app: AppT,
        topics: Collection[str],
        capacity: int,
        *,
        reader: Refetch | None = None,
        committed: Committed | None = None,
    ) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.capacity = capacity
        self._reader = reader
        self._committed = committed  # the group's committed offset, asked of the broker when faust has none
        self._buffer: deque[tuple[int, Delivered]] = deque()
        self._next: dict[TP, int] = {}  # per partition: the offset the next record should have
        self._generation: int | None = None
        self._revoked = False  # partitions are being revoked: nothing more is taken in this generation
        self._woken = asyncio.Event()  # for the taker: records arrived
        self._space = asyncio.Event()  # for the fetch: the buffer has room
        self._space.set()
        self._outstanding = 0  # batches handed out and not acknowledged (or dropped) yet
        self._idle = asyncio.Event()  # set when none is
        self._idle.set()

    def install(self) -> None:
        """Take the bulk topics' records out of every fetch of the app's consumer from now on."""
        faust_adapter.intercept_fetches(self.app, self._take_from)

    @property
    def buffered(self) -> int:
        """Records waiting to be handed out."""
        return len(self._buffer)

    async def _take_from(self, fetch: Callable[[], Any]) -> Any:
        """Run one fetch of faust's; keep the bulk topics' records, return the rest to faust."""
        while len(self._buffer) >= self.capacity:
            self._space.clear()
            await self._space.wait()
        generation = self.app.consumer_generation_id  # before the fetch: its records belong to this one or older
        records, active = await fetch()
        if records:
            await self.offer(records, generation)
        return records, active

    async def offer(self, records: dict[Any, list[Any]], generation: int) -> None:
        """Move the records of the bulk topics out of ``records`` (a fetch's map) into the buffer.

        Records fetched while partitions are being revoked, or of a fetch
        that began in an older generation for a partition not assigned now,
        are dropped: the offsets stay unacknowledged, and whoever owns the
        partition reads them from the committed offset. Every other record
        is checked against the offsets expected (see :meth:`_add`).
        """
        current = self.app.consumer_generation_id
        if current != self._generation:
            self._forget(current)
        assigned = faust_adapter.assigned(self.app) if generation != current else None
        taken: dict[TP, Sequence[Any]] = {}
        for tp in [tp for tp in records if tp.topic in self.topics]:
            fetched = records.pop(tp)
            at = TP(tp.topic, tp.partition)
            if self._revoked or (assigned is not None and at not in assigned):
                for record in fetched:
                    DROPPED.labels(record.topic).inc()
                continue
            taken[at] = fetched
        if not await self._resume_offsets([tp for tp in taken if tp not in self._next], current):
            return  # a rebalance came while the broker was asked: these records are void
        for at, held in taken.items():
            await self._add(at, held, current)
        if self._buffer:
            self._woken.set()

    async def _resume_offsets(self, tps: Sequence[TP], generation: int) -> bool:
        """Set where the group resumes each of ``tps`` as its next offset expected; False if a rebalance came.

        faust's committed offset, once its seek ran; else the broker's
        (asked for all of them at once), else the first offset the broker
        holds. faust's seek back does not run for a partition without a
        commit, so records dropped at a rebalance are not fetched again
        there: only this baseline finds them. A partition without a known
        baseline takes its first record as one.
        """
        unknown = [tp for tp in tps if faust_adapter.committed_offset(self.app, tp) is None]
        offsets: dict[TP, int | None] = {tp: faust_adapter.committed_offset(self.app, tp) for tp in tps}
        if unknown and self._committed is not None:
            committed = self._committed
            asked = await asyncio.gather(*(expected_offset(self.app, tp, committed) for tp in unknown))
            offsets.update(zip(unknown, asked, strict=True))
            if self.app.consumer_generation_id != generation:
                return False
        for tp, offset in offsets.items():
            if offset is not None:
                self._next[tp] = offset
        return True

    def _forget(self, generation: int) -> None:
        """A new generation: partitions may have moved and were seeked back to their commits."""
        self._generation = generation
        self._revoked = False
        self._next.clear()
        stale = [r for g, r in self._buffer if g != generation]
        if stale:
            for record in stale:
                DROPPED.labels(record.topic).inc()
            self._buffer = deque((g, r) for g, r in self._buffer if g == generation)

    async def _add(self, tp: TP, fetched: Sequence[Any], generation: int) -> None:
        """Buffer a partition's fetched records; a jump in offsets is read again first.

        The next offset expected is the one after the last record buffered,
        or where the group resumes the partition for the first record of a
        generation (:meth:`_resume_offsets`). A jump is not taken on trust
        to hold no record: records dropped above, or fetched before faust's
        seek after an assignment, leave one too. The range is read again;
        offsets still without a record are filed as done.
        """
        expected = self._next.get(tp)
        for record in fetched:
            offset = record.offset
            if expected is not None and offset < expected:
                continue  # a seek back: buffered or handled already in this generation
            if expected is not None and offset > expected and not await self._fill(tp, expected, offset, generation):
                return  # a rebalance came meanwhile: this generation's records are void
            self._buffer.append((generation, _delivered(record)))
            expected = offset + 1
        if expected is not None:
            self._next[tp] = expected

    async def _fill(self, tp: TP, start: int, end: int, generation: int) -> bool:
        """Buffer the records of offsets ``start <= offset < end`` read again; file the rest as done."""

        def still() -> bool:
            return bool(self.app.consumer_generation_id == generation)

        if self._reader is None:
            faust_adapter.file_empty(self.app, tp, start, end)
            return True
        records = await read_again(self._reader, tp, tp.topic, (start, end), still_assigned=still)
        if records is None or not still():
            return False
        for record in records:
            self._buffer.append((generation, _delivered(record)))
        for offset in faust_adapter.offsets_without((r.offset for r in records), start, end):
            faust_adapter.file_empty(self.app, tp, offset, offset + 1)
        return True

    async def batches(self, max_events: int, within_s: float) -> AsyncIterator[Batch]:
        """Batches of up to ``max_events`` records, at most ``within_s`` after the first of each arrived."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._fresh():
                self._woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):  # also notices a rebalance that dropped the buffer
                        await self._woken.wait()
            deadline = loop.time() + within_s
            while len(self._buffer) < max_events and (remaining := deadline - loop.time()) > 0:
                self._woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._woken.wait()
            batch = self._take(max_events)
            if batch.records:
                self._outstanding += 1
                self._idle.clear()
                yield batch

    def _fresh(self) -> bool:
        """Whether records of the current generation wait and the consumer's flow is on."""
        if not self._buffer or not faust_adapter.flow_active(self.app):
            return False
        current = self.app.consumer_generation_id
        if current != self._generation:
            self._forget(current)
        return bool(self._buffer)

    def _take(self, limit: int) -> Batch:
        generation = self.app.consumer_generation_id
        if generation != self._generation:
            self._forget(generation)
        records: list[Delivered] = []
        while self._buffer and len(records) < limit:
            records.append(self._buffer.popleft()[1])
        self._space.set()
        return Batch(generation, records)

    def done(self, batch: Batch) -> bool:
        """Acknowledge a handled batch's offsets; False (nothing acknowledged) if a rebalance came meanwhile."""
        self._outstanding -= 1
        if self._outstanding <= 0:
            self._outstanding = 0
            self._idle.set()
        if self.app.consumer_generation_id != batch.generation:
            for record in batch.records:
                DROPPED.labels(record.topic).inc()
            log.info("a rebalance came while %d records were handled; their next owner reads them", len(batch.records))
            return False
        for tp, offsets in batch.offsets().items():
            faust_adapter.acknowledge(self.app, tp, offsets)
        return True

    async def drained(self, timeout_s: float) -> bool:
        """Wait until every buffered record was handed out and handled; False if ``timeout_s`` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._buffer or not self._idle.is_set():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every batch handed out was acknowledged or dropped; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def clear(self) -> None:
        """Drop the records not handed out yet, and take no more until the next generation (a revocation)."""
        for _, record in self._buffer:
            DROPPED.labels(record.topic).inc()
        self._buffer.clear()
        self._revoked = True
        self._space.set()
