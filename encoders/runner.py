"""Run a blocking text encoder off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from encoders.metrics import ENCODE_BATCH_SIZE, ENCODE_SECONDS
from encoders.text import TextEncoder, Vectors


class Embedder(Protocol):
    """What the worker and the API need from an encoder, local or remote."""

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""

    @property
    def name(self) -> str:
        """Model name; stored with every vector."""

    async def encode(self, texts: Sequence[str], caller: str = "api") -> Vectors:
        """Embed texts into an (n, dim) array of unit vectors."""

    def close(self) -> None:
        """Release threads or connections."""


class AsyncEncoder:
    """Awaitable facade over a blocking encoder; one forward pass at a time."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.encoder.dim

    @property
    def name(self) -> str:
        """Model name; stored with every vector."""
        return self.encoder.name

    async def encode(self, texts: Sequence[str], caller: str = "api") -> Vectors:
        """Embed texts without blocking the event loop."""
        started = time.perf_counter()
        vectors = await asyncio.get_running_loop().run_in_executor(self._pool, self.encoder.encode, list(texts))
        ENCODE_SECONDS.labels(caller).observe(time.perf_counter() - started)
        ENCODE_BATCH_SIZE.labels(caller).observe(len(texts))
        return vectors

    def close(self) -> None:
        """Stop the worker thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)
