"""A behavior batch's serving writes: queued behind the changelog write, and a store that refuses them stops nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import REGISTRY

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore, UserRow
from streamrec.errors import StoreError
from streams.events import Search
from streams.fakes import MemoryTable, MemoryTopic
from streams.settings import StreamSettings
from streams.worker import StreamWorker


class RefusingStore(MemoryStore):
    """A store that rejects user rows for good (as a server would a JSON field over its limit)."""

    def upsert_users(self, rows: Sequence[UserRow]) -> None:
        raise StoreError("json field too large")


def _search(event_id: str) -> Search:
    return Search(schema_version=1, event_id=event_id, user_id="u1", query="green tea", ts=1_700_000_000_000)


def _worker(store: MemoryStore) -> tuple[StreamWorker, MemoryTable]:
    worker = StreamWorker(StreamSettings(app_id="unit-serving"), store, AsyncEncoder(HashingTextEncoder(8)))
    table = MemoryTable("profiles", MemoryTopic("profiles-changelog"))
    worker.profiles = table  # type: ignore[assignment]
    return worker, table


def _failures() -> float:
    return REGISTRY.get_sample_value("streamrec_serving_write_failures_total") or 0.0


def test_pipelined_serving_writes_land_after_the_save_and_in_order() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        worker, table = _worker(store)
        await worker._fold_and_save([(0, _search("e1"))], pipelined=True)
        assert table.data["u1"]["events"] == 1  # saved before returning
        await worker._fold_and_save([(0, _search("e2"))], pipelined=True)
        await worker.pipeline.drain()
        row = store.get_user("u1")
        assert row is not None
        assert row.features["events"] == 2

    asyncio.run(scenario())


def test_a_store_refusing_the_rows_for_good_is_counted_and_the_stream_goes_on() -> None:
    async def scenario() -> None:
        worker, table = _worker(RefusingStore())
        before = _failures()
        await worker._fold_and_save([(0, _search("e1"))])
        await worker._fold_and_save([(0, _search("e2"))])
        worker.pipeline.check()  # the line did not stop
        assert table.data["u1"]["events"] == 2
        assert _failures() == before + 2

    asyncio.run(scenario())
