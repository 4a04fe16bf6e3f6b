"""Retry retriable infrastructure errors with backoff, never dropping work.

Retriable are streamrec's own errors that say so (Milvus or the encoder
unreachable) and Kafka client errors that mean the broker blinked: a
leader moving, a request timing out, a connection dropping. A changelog,
dead-letter or examples write that fails that way is waited out here, so
the event behind it is neither dead-lettered nor acknowledged unwritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError
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

# aiokafka marks these not retriable, yet for a producer each means only that
# the broker did not answer in time or is not there right now:
# KafkaTimeoutError is what a send raises when its batch expired unsent while
# the leader was unreachable, or when no metadata came within the request
# timeout; the others are a broker or replica that is down or restarting.
# (aiokafka's own ``retriable`` flag covers the rest: NotLeaderForPartition,
# RequestTimedOut, KafkaConnectionError, LeaderNotAvailable, NotEnoughReplicas...)
# Never retried: errors of the record itself (MessageSizeTooLarge,
# RecordTooLarge), authorisation, a closed or fenced producer.
TRANSIENT_KAFKA_ERRORS: tuple[type[Exception], ...] = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.BrokerNotAvailableError,
    kafka_errors.ReplicaNotAvailableError,
)


def retriable(exc: BaseException) -> bool:
    """Whether a retry of what raised ``exc`` may succeed without anything else changing.

    >>> retriable(kafka_errors.NotLeaderForPartitionError())
    True
    >>> retriable(kafka_errors.MessageSizeTooLargeError())
    False
    """
    if isinstance(exc, StreamrecError):
        return exc.retriable
    if isinstance(exc, ProducerSendError):  # faust wraps the Kafka error of a send it could not queue
        return exc.__cause__ is not None and retriable(exc.__cause__)
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(exc.retriable) or isinstance(exc, TRANSIENT_KAFKA_ERRORS)
    return False


async def with_retries(what: str, call: Callable[[], Awaitable[T]], *, delays_s: Sequence[float] = RETRY_DELAYS_S) -> T:
    """Await ``call`` until it succeeds or fails with an error that is not :func:`retriable`.

    The stream waits here (back-pressure) rather than committing past an event
    whose effect was not written.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retriable(exc):
                raise
            delay = delays_s[min(attempt, len(delays_s) - 1)]
            attempt += 1
            RETRIES.labels(what).inc()
            log.warning("%s failed (attempt %d), retrying in %.2fs: %r", what, attempt, delay, exc)
            await asyncio.sleep(delay)
