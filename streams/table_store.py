"""Local state of the worker's tables: faust's RocksDB store (through ``rocksdict``) or memory.

With ``memory://`` every restart replays each table's whole changelog. With
``rocksdb://`` each table partition is a RocksDB database under the data
directory that also records the changelog offset it holds (faust's
"persisted offset"); recovery then reads only the changelog records after
it, and a wiped data directory is rebuilt from the whole changelog.

faust's RocksDB store does not fit batches as it comes, so
:class:`PartitionedRocksStore` changes four things:

- faust picks the database of a key from the *current event's* partition.
  A batch mixes partitions, timers have no current event, and
  ``streams.changelog.write`` names each record's partition itself; so reads
  look the key up in every open partition (bloom filters make misses cheap)
  and writes go through :func:`save_local`, which takes the partition.
- faust moves the persisted offset only for records it sent itself (a
  callback of ``Table.send_changelog``), which ``streams.changelog.write``
  does not use: :func:`save_local` writes the values and the offset of the
  acknowledged records in one atomic RocksDB batch, so a kill -9 leaves
  either both or neither, and the offset never moves backwards.
- faust runs a full garbage collection per table on every rebalance (about
  a second each with torch loaded) to drop revoked databases; they are
  closed instead.
- a record for a partition this worker does not hold (revoked while the
  write was in flight) is not stored locally: its owner reads it from the
  changelog, and an offset recorded here would skip the records the owner
  wrote meanwhile the next time this worker gets the partition.

Everything here that reaches into faust's private attributes is listed in
:data:`FAUST_INTERNALS` and checked by :func:`check_faust` before the app is
built (faust is pinned to the version those checks were written against).
A changelog topic deleted and recreated under a data directory that is
kept stops the worker with faust's ``ConsistencyError`` (persisted offset
above the topic's end): delete the data directory, it is rebuilt.

Limits: the offset stored is the newest acknowledged one, which assumes
one writer per table partition at a time (true today: one agent per
table, or an agent and a timer sharing a lock). A worker away from a partition longer than the changelog keeps
tombstones (``delete.retention.ms``, a day by default) can keep a key
deleted meanwhile: wipe the data directory of a worker that was down
longer than that.

>>> faust_store_url("memory://")
'streamrec-memory://'
>>> table_dir("streamrec")
'tables-streamrec'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import rocksdict
from faust.stores import STORES
from faust.stores import memory as faust_memory
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP, CollectionT, EventT, TableT
from prometheus_client import Counter

from streamrec.errors import StreamrecError
from streams.settings import TableStore

RECOVERED = Counter(
    "streamrec_table_recovered_records_total",
    "Changelog records applied to local table state during recovery (all of them with memory://, the tail with rocksdb://)",
    ["table"],
)

# RocksDB sizing per table partition (5 tables x N partitions databases per
# worker). faust's defaults (2 GiB block cache, 3 x 64 MiB memtables per
# database) are capacities, but memtables fill up to them under a write
# burst: 20 databases could then hold over a gigabyte unflushed.
ROCKSDB_OPTIONS: Mapping[str, int] = {
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 32 * 1024 * 1024,
    "block_cache_size": 32 * 1024 * 1024,
}

# What this module uses of faust's RocksDB store beyond its public API.
FAUST_INTERNALS: Mapping[object, tuple[str, ...]] = {
    faust_rocksdb: ("Store", "USE_ROCKSDICT"),
    faust_rocksdb.Store: (
        "offset_key",
        "persisted_offset",
        "set_persisted_offset",
        "apply_changelog_batch",
        "_db_for_partition",
        "_get_bucket_for_key",
        "_encode_key",
        "_encode_value",
        "revoke_partitions",
        "stop",
    ),
    faust_memory.Store: ("apply_changelog_batch",),
}


def check_faust(internals: Mapping[object, tuple[str, ...]] = FAUST_INTERNALS) -> None:
    """Raise if the installed faust lacks what this module relies on (a clear stop, not a silent fallback)."""
    missing = [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, names in internals.items()
        for name in names
        if not hasattr(owner, name)
    ]
    if missing:
        raise StreamrecError("the installed faust lacks what streams.table_store needs", missing=missing)
    if not faust_rocksdb.USE_ROCKSDICT:
        raise StreamrecError("rocksdb:// needs the rocksdict package", hint="pip install rocksdict")


def faust_store_url(store: TableStore) -> str:
    """The store URL to give faust for the ``STREAMREC_TABLE_STORE`` setting (registers this module's stores)."""
    check_faust()
    STORES.aliases[_SCHEMES["rocksdb://"]] = f"{__name__}:PartitionedRocksStore"
    STORES.aliases[_SCHEMES["memory://"]] = f"{__name__}:CountingMemoryStore"
    return f"{_SCHEMES[store]}://"


def table_dir(app_id: str) -> str:
    """Where the tables of app ``app_id`` live, relative to faust's versioned data directory.

    faust names the files after the table only; the app id keeps two apps
    sharing a data directory (benchmarks, tests) out of each other's state.
    """
    return f"tables-{app_id}"


_SCHEMES: Mapping[TableStore, str] = {"rocksdb://": "streamrec-rocksdb", "memory://": "streamrec-memory"}


def _count(table: str, batch: Iterable[EventT[Any]]) -> list[EventT[Any]]:
    events = list(batch)
    RECOVERED.labels(table).inc(len(events))
    return events


class CountingMemoryStore(faust_memory.Store[Any, Any]):
    """faust's memory store, counting the changelog records it applies at recovery."""

    def apply_changelog_batch(
        self, batch: Iterable[EventT[Any]], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """As faust's, counted in ``streamrec_table_recovered_records_total``."""
        super().apply_changelog_batch(_count(self.table_name, batch), to_key, to_value)


class PartitionedRocksStore(faust_rocksdb.Store):
    """faust's RocksDB store (rocksdict driver) with reads by key and writes by named partition."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        options = {**ROCKSDB_OPTIONS, **dict(kwargs.pop("options", None) or {})}
        kwargs.setdefault("driver", "rocksdict")
        super().__init__(url, app, table, options=options, **kwargs)

    def apply_changelog_batch(
        self, batch: Iterable[EventT[Any]], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """As faust's (raw bytes into each record's partition, then its offset), counted."""
        super().apply_changelog_batch(_count(self.table_name, batch), to_key, to_value)

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        """Close the databases of revoked partitions (faust leaves that to a full ``gc.collect()``).

        faust collects garbage here on every rebalance, revoked or not, once
        per table: with torch loaded that is about a second each, five
        seconds of every restart. Closing releases RocksDB's lock at once.
        """
        topics = table.changelog_topic.topics
        for tp in tps:
            if tp.topic in topics:
                db = self._dbs.pop(tp.partition, None)
                if db is not None:
                    db.close()

    async def stop(self) -> None:
        """Close every database (flushing memtables), without faust's ``gc.collect()``."""
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()

    def _get(self, key: bytes) -> bytes | None:
        found = self._get_bucket_for_key(key)
        return None if found is None else bytes(found.value)

    def _contains(self, key: bytes) -> bool:
        return self._get_bucket_for_key(key) is not None

    def _set(self, key: bytes, value: bytes | None) -> None:
        raise TypeError(f"table {self.table_name}: write through streams.changelog.write, which names the partition")

    def save(
        self,
        records: Sequence[tuple[int, Any, Any]],
        offsets: Mapping[int, int],
        encoded: Sequence[tuple[bytes, bytes | None]] | None = None,
    ) -> None:
        """Store acknowledged ``(partition, key, value)`` records (None deletes) with each partition's offset.

        ``encoded``, one per record, are the key and value as the changelog
        got them (the table's own codecs), so they are not encoded twice. A
        key is kept in one partition only: a write removes it from the other
        partitions held here, as the memory store's single dict would.
        """
        dbs = self._dbs
        batches: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        for number, (partition, key, value) in enumerate(records):
            if partition not in dbs:
                continue
            raw_key, raw_value = encoded[number] if encoded is not None else (self._encode_key(key), None)
            for other, db in dbs.items():
                if other != partition and db.key_may_exist(raw_key):
                    batches[other].delete(raw_key)
            if value is None:
                batches[partition].delete(raw_key)
                self._key_index.pop(raw_key, None)
            else:
                batches[partition].put(raw_key, raw_value if raw_value is not None else self._encode_value(value))
                self._key_index[raw_key] = partition
        for partition, batch in batches.items():
            offset = offsets.get(partition)
            if offset is not None:
                stored = dbs[partition].get(self.offset_key)
                if stored is None or int(stored) < offset:
                    batch.put(self.offset_key, str(offset).encode())
            dbs[partition].write(batch)


def save_local(
    table: TableT[Any, Any],
    records: Sequence[tuple[int, Any, Any]],
    acks: Sequence[Any],
    encoded: Sequence[tuple[bytes, bytes | None]] | None = None,
) -> None:
    """Set records the changelog acknowledged (``acks``, one per record) in ``table``'s local state.

    ``acks`` are the producer's record metadata (their offsets move a RocksDB
    table's persisted offset); anything without an ``offset`` is ignored.
    ``encoded`` are the records' key and value bytes as sent, if known.
    """
    data = table.data
    if isinstance(data, PartitionedRocksStore):
        offsets: dict[int, int] = {}
        for (partition, _, _), ack in zip(records, acks, strict=True):
            offset = getattr(ack, "offset", None)
            if isinstance(offset, int):
                offsets[partition] = max(offset, offsets.get(partition, offset))
        data.save(records, offsets, encoded)
        return
    for _, key, value in records:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
