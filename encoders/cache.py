"""A bounded LRU of vectors in front of any ``Embedder``: repeated queries are not re-encoded.

Only the callers it is told about go through it (the API by default):
product texts from the worker are mostly new and would only push hot queries
out. Hits and misses are counted per text in
``streamrec_encoder_cache_requests_total{outcome="hit|miss"}``.

>>> import asyncio
>>> from encoders.runner import AsyncEncoder
>>> from encoders.text import HashingTextEncoder
>>> cached = CachedEmbedder(AsyncEncoder(HashingTextEncoder(8)), max_entries=2)
>>> first = asyncio.run(cached.encode(["red shoes"]))
>>> again = asyncio.run(cached.encode(["red shoes"]))
>>> bool((first == again).all()), len(cached)
(True, 1)
>>> cached.close()
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence

import numpy as np

from encoders.metrics import CACHE_ENTRIES, CACHE_REQUESTS
from encoders.runner import Embedder
from encoders.text import Vectors


class CachedEmbedder:
    """An ``Embedder`` that remembers the vectors of the last ``max_entries`` texts."""

    def __init__(self, inner: Embedder, max_entries: int, callers: Collection[str] = ("api",)) -> None:
        self.inner = inner
        self._max_entries = max_entries
        self._callers = frozenset(callers)
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.inner.dim

    @property
    def name(self) -> str:
        """Model name; stored with every vector."""
        return self.inner.name

    def __len__(self) -> int:
        return len(self._vectors)

    async def encode(self, texts: Sequence[str], caller: str = "api") -> Vectors:
        """Cached vectors for known texts; one inner call for the rest."""
        if caller not in self._callers or self._max_entries == 0:
            return await self.inner.encode(texts, caller)
        found: dict[str, Vectors] = {}
        missing: dict[str, None] = {}  # ordered set: each new text encoded once
        for text in texts:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                found[text] = vector
            else:
                missing[text] = None
        CACHE_REQUESTS.labels("hit").inc(len(texts) - len(missing))
        CACHE_REQUESTS.labels("miss").inc(len(missing))
        if missing:
            encoded = await self.inner.encode(list(missing), caller)
            for text, vector in zip(missing, encoded, strict=True):
                # Read-only rows: a caller that edits its result must not edit the cache.
                row = vector.copy()
                row.setflags(write=False)
                found[text] = row
                self._remember(text, row)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def _remember(self, text: str, vector: Vectors) -> None:
        self._vectors[text] = vector
        self._vectors.move_to_end(text)
        while len(self._vectors) > self._max_entries:
            self._vectors.popitem(last=False)
        CACHE_ENTRIES.set(len(self._vectors))

    def close(self) -> None:
        """Close the wrapped embedder."""
        self.inner.close()
