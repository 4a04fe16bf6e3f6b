"""When each key of a table next needs a timer's look, per partition, kept in memory.

A timer that walks a whole table every tick to find the few entries that are
due costs O(table) per tick, even when nothing is due. This index answers
"what is due now?" from a heap per partition instead: a tick with nothing due
peeks at one heap top per owned partition and reads no table value.

The index is derived state. Its owner updates it on every write of the table
(:meth:`Deadlines.set`, :meth:`Deadlines.discard`) and rebuilds it from the
table after each recovery (:meth:`Deadlines.rebuild`, from faust's
``Table.on_recover``), so it never needs a changelog of its own.

Heap entries are invalidated lazily: changing a key's deadline pushes a new
entry and leaves the old one to be dropped when it reaches the top; the heaps
are compacted when stale entries outnumber live ones.

>>> due = Deadlines()
>>> due.set("u1", 0, 100)
>>> due.set("u2", 0, 50)
>>> due.set("u2", 0, 300)  # moved: the old entry is stale
>>> due.due({0}, now_ms=99)
[]
>>> due.due({0}, now_ms=300)
['u1', 'u2']
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable

# Compact a partition's heap once it holds this many times more entries than
# live keys (plus a floor, so small heaps are never rebuilt for nothing).
_STALE_FACTOR = 2
_STALE_FLOOR = 64


class Deadlines:
    """Per-partition deadlines (epoch ms) of string keys; one deadline per key."""

    def __init__(self) -> None:
        self._when: dict[str, tuple[int, int]] = {}  # key -> (partition, deadline)
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._live: dict[int, int] = {}  # partition -> keys with a deadline there

    def __len__(self) -> int:
        return len(self._when)

    def get(self, key: str) -> int | None:
        """The deadline of ``key``, if it has one."""
        entry = self._when.get(key)
        return None if entry is None else entry[1]

    def set(self, key: str, partition: int, deadline: int | None) -> None:
        """Give ``key`` (in ``partition``) a new deadline; None removes it."""
        if deadline is None:
            self.discard(key)
            return
        old = self._when.get(key)
        if old == (partition, deadline):
            return
        if old is not None:
            self._live[old[0]] -= 1
        self._when[key] = (partition, deadline)
        self._live[partition] = self._live.get(partition, 0) + 1
        heap = self._heaps.setdefault(partition, [])
        heapq.heappush(heap, (deadline, key))
        if len(heap) > _STALE_FACTOR * self._live[partition] + _STALE_FLOOR:
            self._compact(partition)

    def discard(self, key: str) -> None:
        """Forget ``key`` (its heap entry goes stale)."""
        old = self._when.pop(key, None)
        if old is not None:
            self._live[old[0]] -= 1

    def due(self, partitions: Collection[int], now_ms: int, limit: int | None = None) -> list[str]:
        """Keys of ``partitions`` whose deadline is at or before ``now_ms``, earliest first, at most ``limit``.

        The keys keep their deadlines: the caller sets new ones (or discards
        them) once it has handled them, so a failed tick sees them again.
        """
        found: list[tuple[int, str]] = []
        for partition in partitions:
            heap = self._heaps.get(partition)
            if not heap:
                continue
            taken: dict[str, int] = {}
            while heap and heap[0][0] <= now_ms and (limit is None or len(taken) < limit):
                deadline, key = heapq.heappop(heap)
                if self._when.get(key) == (partition, deadline):
                    taken[key] = deadline  # a duplicate entry of a live key is dropped here
            for key, deadline in taken.items():  # still live until the caller moves them
                heapq.heappush(heap, (deadline, key))
            found += [(deadline, key) for key, deadline in taken.items()]
        found.sort()
        return [key for _, key in found[:limit]]

    def rebuild(self, entries: Iterable[tuple[str, int, int | None]]) -> None:
        """Start over from ``(key, partition, deadline)`` of every stored entry (after a recovery)."""
        self._when.clear()
        self._heaps.clear()
        self._live.clear()
        for key, partition, deadline in entries:
            if deadline is not None:
                self._when[key] = (partition, deadline)
                self._live[partition] = self._live.get(partition, 0) + 1
        for key, (partition, deadline) in self._when.items():
            self._heaps.setdefault(partition, []).append((deadline, key))
        for heap in self._heaps.values():
            heapq.heapify(heap)

    def _compact(self, partition: int) -> None:
        heap = [(deadline, key) for key, (p, deadline) in self._when.items() if p == partition]
        heapq.heapify(heap)
        self._heaps[partition] = heap
