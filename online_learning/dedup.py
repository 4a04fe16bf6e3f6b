"""The ids of the most recent examples, to learn each example once.

The label join saves its state only after its examples are on the examples
topic, so a join worker that dies in between emits the same examples again
(same deterministic ``example_id``, new offsets) when its batch is replayed.
Offsets cannot tell those apart; their ids can. Re-emission follows the
original within one uncommitted batch, so a window of recent ids is enough.
Ids are kept as 64-bit digests: 10,000 of them add 80 KB to a snapshot.
"""

from __future__ import annotations

import hashlib
from array import array

__all__ = ["RecentIds"]


def _digest(example_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(example_id.encode("utf-8"), digest_size=8).digest(), "little")


class RecentIds:
    """A set of the last ``capacity`` ids added; the oldest is forgotten first."""

    def __init__(self, capacity: int, digests: bytes = b"") -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        kept = array("Q", digests)[-capacity:] if digests else array("Q")
        self._ids: dict[int, None] = dict.fromkeys(kept)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, example_id: str) -> bool:
        return _digest(example_id) in self._ids

    def add(self, example_id: str) -> bool:
        """Remember ``example_id``; False if it was already among the recent ids."""
        digest = _digest(example_id)
        if digest in self._ids:
            return False
        self._ids[digest] = None
        if len(self._ids) > self.capacity:
            del self._ids[next(iter(self._ids))]
        return True

    def to_bytes(self) -> bytes:
        """The digests, oldest first, for a snapshot."""
        return array("Q", self._ids).tobytes()
