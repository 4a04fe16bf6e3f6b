"""The intake: bulk topics' records taken from faust's fetches, batched, and acknowledged only when safe."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord
from faust.types import TP
from intervaltree import IntervalTree

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streams import faust_adapter
from streams.intake import Batch, Intake
from streams.profiles import UserProfile
from streams.settings import StreamSettings
from streams.worker import StreamWorker

CLICKS = "clicks"
OTHER = "products"


def _app(committed: dict[TP, int] | None = None, assigned: set[TP] | None = None) -> Any:
    """A started app's consumer as the intake sees it; ``assigned`` defaults to partition 0 of the clicks."""
    partitions = {TP(CLICKS, 0)} if assigned is None else assigned
    consumer = SimpleNamespace(
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, committed or {}),
        _acked=defaultdict(list),
        _acked_index=defaultdict(set),
        _n_acked=0,
        flow_active=True,
        _wait_next_records=None,
        assignment=lambda: set(partitions),
    )
    return SimpleNamespace(consumer=consumer, consumer_generation_id=1)


def _record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, partition, offset, 1_000_000, 0, b"k", b"v", None, 1, 1, [])


def _fetch(topic: str, partition: int, offsets: list[int]) -> dict[TP, list[ConsumerRecord[bytes, bytes]]]:
    return {TP(topic, partition): [_record(topic, partition, o) for o in offsets]}


async def _first_batch(intake: Intake, max_events: int = 100) -> Batch:
    batches = intake.batches(max_events, 0.01)
    try:
        return await asyncio.wait_for(anext(batches), 2)
    finally:
        await batches.aclose()


def test_bulk_topics_records_are_taken_and_the_rest_left_to_faust() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=100)
        records = {**_fetch(CLICKS, 0, [0, 1]), **_fetch(OTHER, 0, [5])}
        await intake.offer(records, 1)
        assert list(records) == [TP(OTHER, 0)]
        batch = await _first_batch(intake)
        assert [(r.topic, r.offset, r.value, r.message.partition) for r in batch.records] == [
            (CLICKS, 0, b"v", 0),
            (CLICKS, 1, b"v", 0),
        ]
        assert batch.records[0].timestamp == 1000.0  # seconds, as faust's messages have it

    asyncio.run(run())


def test_a_handled_batch_is_acknowledged_to_faust_commit_bookkeeping() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=100)
        await intake.offer(_fetch(CLICKS, 0, [0, 1, 2]), 1)
        batch = await _first_batch(intake)
        assert intake.done(batch)
        assert app.consumer._acked[TP(CLICKS, 0)] == [0, 1, 2]
        assert app.consumer._n_acked == 3

    asyncio.run(run())


def test_a_batch_handled_across_a_rebalance_is_not_acknowledged() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=100)
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 1)
        batch = await _first_batch(intake)
        app.consumer_generation_id = 2
        assert not intake.done(batch)
        assert not app.consumer._acked

    asyncio.run(run())


def test_records_of_an_older_generation_are_dropped_unhandled() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=100)
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 1)
        app.consumer_generation_id = 2
        await intake.offer(_fetch(CLICKS, 0, [0, 1, 2]), 2)  # read again from the committed offset
        batch = await _first_batch(intake)
        assert [r.offset for r in batch.records] == [0, 1, 2]
        assert batch.generation == 2

    asyncio.run(run())


def test_a_jump_is_read_again_records_found_are_handled_and_empty_offsets_filed_as_done() -> None:
    async def run() -> None:
        tp = TP(CLICKS, 0)
        app = _app({tp: 10})
        asked: list[tuple[int, int]] = []

        async def reader(at: TP, start: int, end: int) -> list[ConsumerRecord[bytes, bytes]]:
            asked.append((start, end))
            held = {10, 16}  # 11 and 15 hold no record (compaction, a transaction marker)
            return [_record(at.topic, at.partition, o) for o in range(start, end) if o in held]

        intake = Intake(app, [CLICKS], capacity=100, reader=reader)
        await intake.offer(_fetch(CLICKS, 0, [12, 13]), 1)
        await intake.offer(_fetch(CLICKS, 0, [12, 13, 14, 17]), 1)  # a seek back, then a jump
        batch = await _first_batch(intake)
        assert asked == [(10, 12), (15, 17)]
        assert [r.offset for r in batch.records] == [10, 12, 13, 14, 16, 17]
        assert faust_adapter.gap_offsets(app, tp) == [11, 15]
        assert intake.done(batch)
        assert app.consumer._acked[tp] == [10, 12, 13, 14, 16, 17]

    asyncio.run(run())


def test_records_fetched_while_revoking_or_across_a_rebalance_that_took_the_partition_are_dropped() -> None:
    async def run() -> None:
        app = _app(assigned={TP(CLICKS, 1)})
        intake = Intake(app, [CLICKS], capacity=100)
        app.consumer_generation_id = 2
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 1)  # fetched before the rebalance; partition 0 moved
        assert intake.buffered == 0
        intake.clear()  # partitions are being revoked
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 2)
        assert intake.buffered == 0
        app.consumer_generation_id = 3
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 3)
        assert intake.buffered == 2

    asyncio.run(run())


def test_the_last_records_of_a_fetch_that_spanned_a_rebalance_are_handled_and_committed() -> None:
    """faust may seek back before a fetch begun in the old generation returns; its records come only once.

    The kill -9 soak left two records behind on each of two quiet
    partitions: dropped as stale, they never came again.
    """

    async def run() -> None:
        tp = TP(CLICKS, 0)
        app = _app({tp: 7})
        intake = Intake(app, [CLICKS], capacity=100)
        app.consumer_generation_id = 2  # assigned again; faust seeked back to 7 while the fetch waited
        await intake.offer(_fetch(CLICKS, 0, [7, 8]), 1)
        batch = await _first_batch(intake)
        assert [r.offset for r in batch.records] == [7, 8]
        assert intake.done(batch)
        assert app.consumer._acked[tp] == [7, 8]

    asyncio.run(run())


def test_without_a_commit_known_to_faust_the_broker_says_where_the_partition_resumes() -> None:
    """faust's seek back skips a partition without a commit: records dropped at a rebalance are found as a jump."""

    async def run() -> None:
        tp = TP(CLICKS, 0)
        app = _app()
        asked: list[tuple[int, int]] = []

        async def reader(at: TP, start: int, end: int) -> list[ConsumerRecord[bytes, bytes]]:
            asked.append((start, end))
            return [_record(at.topic, at.partition, o) for o in range(start, end)]

        async def committed(at: TP) -> int | None:
            return 0  # no commit: the first offset the broker holds

        intake = Intake(app, [CLICKS], capacity=100, reader=reader, committed=committed)
        await intake.offer(_fetch(CLICKS, 0, [0, 1, 2]), 1)
        app.consumer_generation_id = 2  # the buffered records are dropped; the position stays at 3
        await intake.offer(_fetch(CLICKS, 0, [3, 4]), 2)
        batch = await _first_batch(intake)
        assert asked == [(0, 3)]
        assert [r.offset for r in batch.records] == [0, 1, 2, 3, 4]
        assert intake.done(batch)
        assert app.consumer._acked[tp] == [0, 1, 2, 3, 4]

    asyncio.run(run())


def test_batches_are_held_while_faust_has_the_flow_stopped() -> None:
    async def run() -> None:
        app = _app()
        app.consumer.flow_active = False
        intake = Intake(app, [CLICKS], capacity=100)
        await intake.offer(_fetch(CLICKS, 0, [0]), 1)
        batches = intake.batches(10, 0.01)
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.1)
        assert not pending.done()
        app.consumer.flow_active = True
        batch = await asyncio.wait_for(pending, 2)
        assert [r.offset for r in batch.records] == [0]
        await batches.aclose()

    asyncio.run(run())


def test_a_full_buffer_holds_the_next_fetch_back_until_a_batch_is_taken() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=2)
        fetches = 0

        async def fetch() -> tuple[Any, Any]:
            nonlocal fetches
            fetches += 1
            return _fetch(CLICKS, 0, [fetches * 2 - 2, fetches * 2 - 1]), None

        await intake._take_from(fetch)
        second = asyncio.ensure_future(intake._take_from(fetch))
        await asyncio.sleep(0.05)
        assert fetches == 1
        assert not second.done()
        batch = await _first_batch(intake, max_events=2)
        await asyncio.wait_for(second, 2)
        assert fetches == 2
        assert [r.offset for r in batch.records] == [0, 1]

    asyncio.run(run())


def test_clearing_drops_what_was_not_handed_out() -> None:
    async def run() -> None:
        app = _app()
        intake = Intake(app, [CLICKS], capacity=100)
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 1)
        intake.clear()
        assert intake.buffered == 0
        assert await intake.drained(0.5)

    asyncio.run(run())


def test_a_revocation_drops_what_waits_lets_the_batch_in_hand_finish_and_commits_it() -> None:
    """The worker's revocation handler: nothing new is handed out, the batch being handled is acknowledged first."""

    async def run() -> None:
        worker = StreamWorker(StreamSettings(app_id="unit-revoke"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
        fake = _app()
        commits: list[list[int]] = []

        async def commit() -> None:
            commits.append(list(fake.consumer._acked[TP(CLICKS, 0)]))

        fake.consumer.commit = commit
        worker.app.consumer = fake.consumer
        worker.app.consumer_generation_id = 1  # type: ignore[misc]
        intake = Intake(worker.app, [CLICKS], capacity=100)
        worker.intake = intake
        worker.hot.keep([UserProfile("u1", 1.0)])
        await intake.offer(_fetch(CLICKS, 0, [0, 1]), 1)
        in_hand = await _first_batch(intake, max_events=1)
        revoking = asyncio.ensure_future(worker._on_partitions_revoked(worker.app, set()))
        await asyncio.sleep(0.05)
        assert not revoking.done()  # waits for the batch in hand
        assert intake.buffered == 0  # offset 1 dropped: its next owner reads it
        assert len(worker.hot) == 0
        intake.done(in_hand)
        await asyncio.wait_for(revoking, 2)
        assert commits == [[0]]

    asyncio.run(run())
