"""Retry retriable infrastructure errors with backoff, never dropping work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import Counter

from streamrec.errors import StreamrecError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = Counter(
    "streamrec_retries_total", "Retries after a retriable infrastructure error (the stream waits)", ["operation"]
)

# Short first steps absorb a blip; the 5 s ceiling keeps a stalled stream
# probing a recovering Milvus often enough to resume within seconds.
RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


async def with_retries(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call`` until it succeeds or fails with a non-retriable error.

    The stream waits here (back-pressure) rather than committing past an event
    whose effect was not written.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except StreamrecError as exc:
            if not exc.retriable:
                raise
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            attempt += 1
            RETRIES.labels(what).inc()
            log.warning("%s failed (attempt %d), retrying in %.2fs: %s", what, attempt, delay, exc)
            await asyncio.sleep(delay)
