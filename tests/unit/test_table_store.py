"""Local table state on RocksDB: values by named partition, offsets with them, reads by key, reopened intact."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.types import TP

from streamrec.errors import StreamrecError
from streams import changelog, table_store
from streams.fakes import MemoryProducer, MemoryTopic

PARTITIONS = 4


def _table(datadir: Path, store: table_store.TableStore = "rocksdb://") -> Any:
    """A worker-like table (JSON values, no value_type) with every partition open, as after an assignment."""
    app = faust.App(
        "unit-state", store=table_store.faust_store_url(store), datadir=str(datadir), tabledir="tables-unit-state"
    )
    table = app.Table("profiles", default=None, partitions=PARTITIONS)
    table.changelog_topic = MemoryTopic("unit-state-profiles-changelog")
    app.producer = MemoryProducer(table.changelog_topic)
    if store == "rocksdb://":
        for partition in range(PARTITIONS):
            table.data._db_for_partition(partition)
    return table


def _close(table: Any) -> None:
    """Release the RocksDB files (faust's own stop leaves closing to the garbage collector)."""
    for db in table.data._dbs.values():
        db.close()
    table.data._dbs.clear()
    gc.collect()


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Any]:
    """A RocksDB-backed table under a temporary data directory."""
    opened = _table(tmp_path)
    yield opened
    _close(opened)


def _offset(table: Any, partition: int) -> int | None:
    offset: int | None = table.data.persisted_offset(TP(table.changelog_topic.name, partition))
    return offset


def test_changelog_write_stores_dicts_that_read_back_as_dicts(table: Any) -> None:
    """A value written through ``changelog.write`` round-trips through the table's JSON serializer."""
    profile = {"user_id": "u1", "events": 3, "categories": {"shoes": 1.5}, "recent_items": ["a", "b"]}
    asyncio.run(changelog.write(table, [(2, "u1", profile)]))
    assert table.get("u1") == profile
    assert "u1" in table.data
    assert table.get("nobody") is None


def test_reads_find_the_key_whatever_the_current_event_s_partition(table: Any) -> None:
    """In a batch the current event belongs to one partition; a key saved in another is still found."""
    asyncio.run(changelog.write(table, [(3, "u3", {"events": 1})]))

    class Message:
        partition = 0

    class Event:
        message = Message()

    event = Event()
    token = _current_event.set(weakref.ref(event))
    try:
        assert table.get("u3") == {"events": 1}
        assert "u3" in table.data
    finally:
        _current_event.reset(token)


def test_each_partition_persists_the_offset_of_its_newest_acknowledged_record(table: Any) -> None:
    """The offset recovery starts from moves with the values saved in that partition, never backwards."""
    asyncio.run(changelog.write(table, [(1, "a", {"n": 1}), (1, "b", {"n": 1}), (2, "c", {"n": 1})]))
    assert (_offset(table, 0), _offset(table, 1), _offset(table, 2)) == (None, 1, 0)
    table_store.save_local(table, [(1, "a", {"n": 2})], [type("Ack", (), {"offset": 0})()])
    assert _offset(table, 1) == 1
    assert table.get("a") == {"n": 2}


def test_a_key_lives_in_one_partition_and_a_tombstone_removes_it(table: Any) -> None:
    """A key saved in another partition leaves no older copy behind; None deletes it everywhere."""
    asyncio.run(changelog.write(table, [(1, "u", {"v": 1})]))
    asyncio.run(changelog.write(table, [(3, "u", {"v": 2})]))
    assert table.get("u") == {"v": 2}
    assert sorted(p for p, db in table.data._dbs.items() if db.get(table.data._encode_key("u")) is not None) == [3]
    asyncio.run(changelog.write(table, [(3, "u", None)]))
    assert table.get("u") is None
    assert all(db.get(table.data._encode_key("u")) is None for db in table.data._dbs.values())


def test_records_of_partitions_not_held_are_left_to_their_owner(table: Any) -> None:
    """A write acknowledged after its partition was revoked is not stored, and no offset is recorded for it."""
    table.data._dbs.pop(0)
    asyncio.run(changelog.write(table, [(0, "gone", {"v": 1}), (1, "kept", {"v": 1})]))
    assert table.get("gone") is None
    assert table.get("kept") == {"v": 1}
    assert 0 not in table.data._dbs


def test_state_and_offsets_survive_a_reopen(tmp_path: Path) -> None:
    """A new process on the same data directory finds every value and each partition's offset."""
    first = _table(tmp_path)
    records = [(i % PARTITIONS, f"u{i}", {"events": i}) for i in range(200)]
    asyncio.run(changelog.write(first, records))
    _close(first)

    second = _table(tmp_path)
    try:
        assert {key: second.get(key) for _, key, _ in records} == {key: value for _, key, value in records}
        assert [_offset(second, p) for p in range(PARTITIONS)] == [49] * PARTITIONS
    finally:
        _close(second)


def test_assignment_through_the_table_is_refused(table: Any) -> None:
    """``table.data[key] = value`` cannot name a partition, so it fails loudly instead of guessing one."""
    with pytest.raises(TypeError, match=r"changelog\.write"):
        table.data["u1"] = {"events": 1}


def test_the_memory_store_takes_the_same_writes(tmp_path: Path) -> None:
    """``memory://`` keeps working through the same ``changelog.write``."""
    table = _table(tmp_path, "memory://")
    asyncio.run(changelog.write(table, [(1, "u1", {"events": 1}), (2, "u2", {"events": 2})]))
    asyncio.run(changelog.write(table, [(1, "u1", None)]))
    assert (table.get("u1"), table.get("u2")) == (None, {"events": 2})


def test_a_faust_without_the_internals_used_stops_the_worker() -> None:
    """Every private faust attribute relied on is checked: one missing is a clear error, not a fallback."""
    table_store.check_faust()

    class Bare:
        pass

    with pytest.raises(StreamrecError, match=r"Bare\._db_for_partition"):
        table_store.check_faust({Bare: ("_db_for_partition",)})
