"""Dynamic batching: concurrent requests share forward passes.

A batch closes when it holds ``max_batch_size`` texts or when its oldest
request has waited ``max_wait_s``. Inside a batch texts are sorted by length
before the encoder sees them, so the chunks it pads together are of similar
length; every request still gets its own vectors, in its own order.

The queue is bounded in texts: past ``max_queue_texts`` a request is refused
at once with ``QueueFull`` (the service answers 503 with ``Retry-After``)
rather than waiting without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders.metrics import QUEUE_TEXTS, QUEUE_WAIT_SECONDS
from encoders.runner import Embedder
from encoders.text import Vectors
from streamrec.errors import EncoderUnavailable

log = logging.getLogger(__name__)


class QueueFull(EncoderUnavailable):
    """The batcher's queue cannot take the request now; it may later."""


@dataclass(eq=False, slots=True)
class _Request:
    texts: list[str]
    enqueued: float
    future: asyncio.Future[Vectors] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class DynamicBatcher:
    """Merges concurrent ``embed`` calls into batches for one embedder."""

    def __init__(
        self,
        embedder: Embedder,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_texts: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._embedder = embedder
        self._max_batch = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue_texts
        self._clock = clock
        self._pending: deque[_Request] = deque()
        self._queued_texts = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a batch."""
        return self._queued_texts

    def start(self) -> None:
        """Start forming batches on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="encoder-batcher")

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors of ``texts`` in their order, computed in a batch shared with other callers."""
        if self._closed:
            raise EncoderUnavailable("encoder service is shutting down")
        if not texts:
            return np.zeros((0, self._embedder.dim), dtype=np.float32)
        if self._queued_texts + len(texts) > self._max_queue:
            raise QueueFull("encoder queue is full", queued=self._queued_texts, limit=self._max_queue)
        request = _Request(list(texts), self._clock())
        self._pending.append(request)
        self._set_queued(self._queued_texts + len(texts))
        self._arrived.set()
        try:
            return await request.future
        finally:
            # A caller that went away (client disconnect, timeout) leaves the
            # queue at once, so its texts are neither encoded nor counted.
            if request in self._pending:
                self._pending.remove(request)
                self._set_queued(self._queued_texts - len(request.texts))

    async def close(self) -> None:
        """Stop batching; requests still waiting fail as unavailable."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        _fail(self._pending, EncoderUnavailable("encoder service is shutting down"))
        self._pending.clear()
        self._set_queued(0)

    def _set_queued(self, texts: int) -> None:
        self._queued_texts = texts
        QUEUE_TEXTS.set(texts)

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if batch:
                await self._encode(batch)

    async def _wait_for_batch(self) -> None:
        """Return when a batch is full or its oldest request has waited long enough."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].enqueued + self._max_wait_s
        while self._pending and self._queued_texts < self._max_batch:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Request]:
        """Whole requests, oldest first, up to max_batch_size texts (a larger request goes alone)."""
        batch: list[_Request] = []
        size = 0
        now = self._clock()
        while self._pending:
            request = self._pending[0]
            if batch and size + len(request.texts) > self._max_batch:
                break
            self._pending.popleft()
            self._set_queued(self._queued_texts - len(request.texts))
            if request.future.done():
                continue
            batch.append(request)
            size += len(request.texts)
            QUEUE_WAIT_SECONDS.observe(now - request.enqueued)
        return batch

    async def _encode(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        # Characters are a cheap stand-in for tokens: sorted texts put similar
        # lengths in the same forward chunk, so less of each pass is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        try:
            encoded = await self._embedder.encode([texts[i] for i in order], caller="service")
        except asyncio.CancelledError:
            _fail(batch, EncoderUnavailable("encoder service is shutting down"))
            raise
        except Exception as exc:
            log.warning("batch of %d texts failed: %s", len(texts), exc)
            _fail(batch, exc)
            return
        vectors = np.empty_like(encoded)
        vectors[order] = encoded
        start = 0
        for request in batch:
            end = start + len(request.texts)
            if not request.future.done():
                request.future.set_result(vectors[start:end])
            start = end


def _fail(requests: Iterable[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)
