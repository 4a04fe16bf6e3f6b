"""Contain a poison message: retry it alone a few times, then dead-letter it and move on.

faust acknowledges every event of a batch whose handler raised, so an
exception escaping an agent would drop the whole batch. Retriable
infrastructure errors (Milvus or the encoder unreachable, a Kafka write the
broker could not take right now: see ``streams.retry.retriable``) are waited
out: the batch is tried again with backoff for as long as it takes, and
nothing is dead-lettered. Anything else that fails a batch is treated as a
possible poison message:
the batch is replayed one event at a time, in order, each with bounded
retries, and the events that still fail go to the dead-letter topic (the
write acknowledged) before the batch is acknowledged. The events around a
poison message are applied; the consumer never crash-loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter

from streams.events import Rejection
from streams.intake import RawEvent
from streams.retry import with_retries

log = logging.getLogger(__name__)
Item = TypeVar("Item", bound=tuple[RawEvent, Any])
DeadLetter = Callable[[RawEvent, Rejection, str], Awaitable[None]]

FAILED_BATCHES = Counter(
    "streamrec_failed_batches_total", "Batches whose processing raised and were replayed event by event", ["agent"]
)
POISON_RETRIES = Counter(
    "streamrec_poison_retries_total", "Retries of single events after their batch failed", ["agent"]
)

ATTEMPTS = 3
BACKOFF_S = 0.2


async def apply_contained(
    agent: str,
    items: Sequence[Item],
    apply: Callable[[Sequence[Item]], Awaitable[None]],
    dead_letter: DeadLetter,
    *,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> int:
    """Apply ``items`` as a batch, or one by one if the batch fails; returns how many were dead-lettered."""
    if not items:
        return 0
    try:
        await with_retries(f"{agent} batch", lambda: apply(items))
        return 0
    except Exception as exc:  # any failure here is contained below, never propagated to faust
        FAILED_BATCHES.labels(agent).inc()
        log.warning("%s: a batch of %d failed (%r); applying its events one by one", agent, len(items), exc)
    poisoned = 0
    for item in items:
        error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                POISON_RETRIES.labels(agent).inc()
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
            try:
                await with_retries(f"{agent} event", lambda: apply([item]))  # noqa: B023 (awaited at once)
                error = None
                break
            except Exception as exc:  # retried, then dead-lettered with its cause
                error = exc
        if error is not None:
            event = item[0]
            detail = f"{type(error).__name__}: {error} (after {attempts} attempts)"
            log.error("%s: dead-lettering a poison message: %s", agent, detail, exc_info=error)
            await dead_letter(event, Rejection("processing_failed", detail, event.value or b""), agent)
            poisoned += 1
    return poisoned
