"""In-memory stand-ins for the parts of faust topics and tables that streamrec's stream code uses.

They let a test build a label join, a parking or a changelog write without a
broker, inject Kafka failures into sends, and count reads of table values.

>>> import asyncio
>>> from streams import changelog
>>> table = MemoryTable("profiles")
>>> asyncio.run(changelog.write(table, [(0, "u1", {"events": 1})]))
>>> (table.data["u1"], table.changelog_topic.acked)
({'events': 1}, [(0, 'u1', {'events': 1})])
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from faust.types.tuples import RecordMetadata


class MemoryTopic:
    """A topic whose sends are acknowledged at once, or fail with the queued errors first.

    ``failures`` are raised one per send, in order: an error is raised by
    the send itself when ``on_send`` is true (the producer could not queue
    it), otherwise by the returned future (the broker did not acknowledge).
    """

    def __init__(self, name: str = "topic", failures: Iterable[BaseException] = (), *, on_send: bool = False) -> None:
        self.name = name
        self.failures = list(failures)
        self.on_send = on_send
        self.acked: list[tuple[int | None, Any, Any]] = []  # (partition, key, value) the "broker" took
        self.sends = 0
        self._ends: dict[int, int] = {}  # next offset per partition

    def get_topic_name(self) -> str:
        """As faust's ``Topic.get_topic_name``."""
        return self.name

    async def send(self, *, key: Any = None, value: Any = None, partition: int | None = None, **_: Any) -> Any:
        """As faust's ``Topic.send(..., force=True)``: a future of the broker's acknowledgement (its metadata)."""
        self.sends += 1
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if self.failures:
            error = self.failures.pop(0)
            if self.on_send:
                raise error
            future.set_exception(error)
        else:
            self.acked.append((partition, key, value))
            number = partition or 0
            offset = self._ends.get(number, 0)
            self._ends[number] = offset + 1
            future.set_result(RecordMetadata(self.name, number, TP(self.name, number), offset))
        return future


class MemoryProducer:
    """As faust's ``Producer.send`` for the changelog writes: decodes the JSON records into ``topic``."""

    def __init__(self, topic: MemoryTopic) -> None:
        self.topic = topic

    async def send(  # noqa: PLR0917 (faust's positional signature)
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, timestamp: Any, headers: Any
    ) -> Any:
        """Queue one serialised record; a future of the acknowledgement."""
        del timestamp, headers
        if topic != self.topic.name:
            raise ValueError(f"sent to {topic}, not the changelog {self.topic.name}")
        decoded_key = json.loads(key) if key is not None else None
        decoded_value = json.loads(value) if value is not None else None
        return await self.topic.send(key=decoded_key, value=decoded_value, partition=partition)


class CountingDict(dict[str, Any]):
    """A dict that counts how often its values were read, one by one or by a scan."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Counted as one read."""
        self.reads += 1
        return super().get(key, default)

    def items(self) -> Any:
        """Counted as a read of every value."""
        self.reads += len(self)
        return super().items()

    def values(self) -> Any:
        """Counted as a read of every value."""
        self.reads += len(self)
        return super().values()

    def __iter__(self) -> Iterator[str]:
        self.reads += len(self)
        return super().__iter__()


class MemoryTable:
    """A faust table as ``streams.changelog.write`` and the timers use it: ``data``, ``get``, a changelog topic."""

    key_serializer = "json"
    value_serializer = "json"

    def __init__(self, name: str = "table", changelog_topic: MemoryTopic | None = None) -> None:
        self.name = name
        self.data = CountingDict()
        self.changelog_topic = changelog_topic if changelog_topic is not None else MemoryTopic(f"{name}-changelog")
        self.app = SimpleNamespace(producer=MemoryProducer(self.changelog_topic))
        self.recover_callbacks: list[Callable[[], Awaitable[None]]] = []

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        """As ``Table.get``."""
        return self.data.get(key, default)

    def on_recover(self, fun: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """As ``Table.on_recover``: ``fun`` runs after each recovery (see :meth:`recovered`)."""
        self.recover_callbacks.append(fun)
        return fun

    async def recovered(self) -> None:
        """What faust does once the table is recovered: call the recovery callbacks."""
        for fun in self.recover_callbacks:
            await fun()
