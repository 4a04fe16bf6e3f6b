"""Decoded profiles kept between batches: bounded, and never one that differs from the table."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import errors as kafka_errors

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streams.events import Search
from streams.fakes import MemoryTable, MemoryTopic
from streams.hot_profiles import HotProfiles
from streams.profiles import UserProfile
from streams.settings import StreamSettings
from streams.worker import StreamWorker

HALF_LIFE_MS = 3_600_000.0


def _search(event_id: str, user_id: str = "u1") -> Search:
    return Search(schema_version=1, event_id=event_id, user_id=user_id, query="espresso beans", ts=1_700_000_000_000)


def test_the_least_recently_used_profiles_leave_beyond_the_size() -> None:
    hot = HotProfiles(2)
    a, b, c = (UserProfile(u, HALF_LIFE_MS) for u in "abc")
    hot.keep([a, b])
    assert hot.get("a") is a  # now the most recently used
    hot.keep([c])
    assert hot.get("b") is None
    assert hot.get("a") is a
    assert hot.get("c") is c
    hot.discard(["a"])
    assert hot.get("a") is None
    hot.clear()
    assert len(hot) == 0


def test_size_zero_keeps_nothing() -> None:
    hot = HotProfiles(0)
    hot.keep([UserProfile("a", HALF_LIFE_MS)])
    assert hot.get("a") is None


def _worker() -> tuple[StreamWorker, MemoryTable]:
    worker = StreamWorker(StreamSettings(app_id="unit-hot"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
    table = MemoryTable("profiles", MemoryTopic("profiles-changelog"))
    worker.profiles = table  # type: ignore[assignment]
    return worker, table


def test_a_saved_profile_is_served_from_memory_the_next_batch() -> None:
    async def scenario() -> None:
        worker, table = _worker()
        await worker._fold_and_save([(0, _search("e1"))])
        reads = table.data.reads
        folded = await worker._fold_and_save([(0, _search("e2"))])
        assert table.data.reads == reads, "the table was read although the profile was kept"
        assert folded.profiles["u1"][0].events == 2
        assert table.data["u1"]["events"] == 2

    asyncio.run(scenario())


def test_a_batch_whose_save_failed_leaves_no_changed_profile_behind() -> None:
    """The retried batch applies its events again from the saved state, instead of finding them seen."""

    async def scenario() -> None:
        worker, table = _worker()
        await worker._fold_and_save([(0, _search("e1"))])  # saved; kept
        table.changelog_topic.failures.append(kafka_errors.MessageSizeTooLargeError())
        with pytest.raises(kafka_errors.MessageSizeTooLargeError):
            await worker._fold_and_save([(0, _search("e2"))])
        assert table.data["u1"]["events"] == 1
        folded = await worker._fold_and_save([(0, _search("e2"))])
        assert folded.applied == [True]
        assert table.data["u1"]["events"] == 2

    asyncio.run(scenario())
