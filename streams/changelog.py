"""Write table changes to their changelog and wait for the broker before moving on.

faust's own ``Table.send_changelog`` queues records in a producer buffer,
and faust's flush before an offset commit gives up on that buffer after
0.1 s without an ack, so a commit can overtake the state it reflects: a
worker killed then loses those changes (measured: 38 of 720 events in one
kill -9 run). Records are therefore sent at once (``force``: not attached to
the current event) and awaited before the batch is acknowledged, and the
local value is set only once the broker has the record. They go straight to
the app's producer, serialised with the table's own codecs: faust's
``Topic.send`` costs several times the send itself per record (measured in a
profile of the worker: a tenth of its main thread), and a batch writes one
record per changed shopper. A write the broker
could not take right now (a leader moving, a timeout) is sent again until it
is taken: the stream waits, and no event is dead-lettered for it.

Every table's changelog topic is compacted, and configured so compaction
actually runs (:data:`TOPIC_CONFIG`): a restarted worker then reads about
one record per key, not the table's whole history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, cast

from faust.serializers import codecs
from faust.tables.base import Collection
from faust.types import TableT

from streams import table_store
from streams.retry import RETRY_DELAYS_S, with_retries

# The tables of a stream worker, by name (faust names their changelog topics
# ``<app_id>-<name>-changelog``); tests check this against the worker's app.
TABLES = ("items", "label-join", "parked", "popular", "profiles")

# Kafka compacts only closed segments, and by default rolls a segment at
# 1 GiB or after 7 days and cleans a log once half of it is dirty: a
# changelog below 1 GiB was never compacted at all (92,057 records for 4.8k
# shoppers, all replayed on every restart).
TOPIC_CONFIG: Mapping[str, str] = {
    # Keep the newest value per key, forever: never "delete", which would
    # drop the profile of a shopper idle longer than the retention time.
    "cleanup.policy": "compact",
    # Roll the active (never compacted) segment every minute, so at most about
    # a minute of writes per partition is left uncompacted by the head.
    "segment.ms": "60000",
    # ... and at 16 MiB under a heavy write rate, whichever comes first; the
    # cleaner merges small cleaned segments back up to this size, so the
    # number of segment files stays bounded.
    "segment.bytes": str(16 * 1024 * 1024),
    # Clean once 10% of the log is superseded records (default 50%): a
    # restart reads at most ~1.1 records per live key plus the active segment.
    "min.cleanable.dirty.ratio": "0.1",
}


def topic_name(app_id: str, table: str) -> str:
    """The changelog topic faust gives ``table`` of app ``app_id``.

    >>> topic_name("streamrec", "profiles")
    'streamrec-profiles-changelog'
    """
    return f"{app_id}-{table}-changelog"


def topic_names(app_id: str, tables: Iterable[str] = TABLES) -> list[str]:
    """The changelog topics of every table of a worker."""
    return [topic_name(app_id, table) for table in tables]


async def all_acked(futures: Sequence[Awaitable[Any]]) -> list[Any]:
    """Wait for every send and return the acks; raise the first failure once all are settled (none left unretrieved)."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def write(
    table: TableT[Any, Any], records: Sequence[tuple[int, str, Any]], *, delays_s: Sequence[float] = RETRY_DELAYS_S
) -> None:
    """Send ``(partition, key, value)`` records to ``table``'s changelog, await the acks, then set them locally.

    ``value`` None deletes ``key``. Retriable Kafka errors are retried, after
    ``delays_s`` (all records again: a compacted changelog keeps one per key).
    """
    if not records:
        return
    collection = cast(Collection, table)
    producer = table.app.producer
    topic = table.changelog_topic.get_topic_name()
    serialised = [
        (
            partition,
            codecs.dumps(collection.key_serializer, key),
            None if value is None else codecs.dumps(collection.value_serializer, value),
        )
        for partition, key, value in records
    ]

    async def send_all() -> list[Any]:
        futures: list[Awaitable[Any]] = []
        try:
            for partition, key, value in serialised:
                futures.append(await producer.send(topic, key, value, partition, None, None))
        except Exception:
            await asyncio.gather(*futures, return_exceptions=True)  # settle what was sent before the failure
            raise
        return await all_acked(futures)

    acks = await with_retries(f"changelog of {table.name}", send_all, delays_s=delays_s)
    table_store.save_local(table, records, acks, [(key, value) for _, key, value in serialised])
