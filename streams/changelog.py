"""Write table changes to their changelog and wait for the broker before moving on.

faust's own ``Table.send_changelog`` queues records in a producer buffer,
and faust's flush before an offset commit gives up on that buffer after
0.1 s without an ack, so a commit can overtake the state it reflects: a
worker killed then loses those changes (measured: 38 of 720 events in one
kill -9 run). Records are therefore sent at once (``force``: not attached to
the current event) and awaited before the batch is acknowledged, and the
local value is set only once the broker has the record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from faust.tables.base import Collection
from faust.types import TableT


async def write(table: TableT[Any, Any], records: Sequence[tuple[int, str, Any]]) -> None:
    """Send ``(partition, key, value)`` records to ``table``'s changelog, await the acks, then set them locally.

    ``value`` None deletes ``key``.
    """
    if not records:
        return
    collection = cast(Collection, table)
    futures = [
        await table.changelog_topic.send(
            key=key,
            value=value,
            partition=partition,
            key_serializer=collection.key_serializer,
            value_serializer="raw" if value is None else collection.value_serializer,
            force=True,
        )
        for partition, key, value in records
    ]

    await asyncio.gather(*futures)
    for _, key, value in records:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
