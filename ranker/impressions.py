"""Log every served result list to the impressions topic, off the request path."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from streamrec.kafka_client import KafkaConnection

log = logging.getLogger(__name__)

IMPRESSIONS = Counter("streamrec_impressions_total", "Impressions logged", ["outcome"])


class ImpressionSink(Protocol):
    """Where served result lists go; ``log`` never blocks the request."""

    def log(self, user_id: str, impression: dict[str, Any]) -> None:
        """Queue one impression, keyed by user."""


class MemorySink:
    """Keeps impressions in a list (tests, and the API without Kafka)."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    def log(self, user_id: str, impression: dict[str, Any]) -> None:
        self.logged.append(impression)
        IMPRESSIONS.labels("logged").inc()


class KafkaSink:
    """Produces impressions with aiokafka; sends complete in the background."""

    def __init__(self, kafka: KafkaConnection, topic: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._pending: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        """Connect the producer (aiokafka objects belong to the running loop)."""
        self._producer = AIOKafkaProducer(**self._kafka.aiokafka(), acks=1, linger_ms=5)
        await self._producer.start()

    async def stop(self) -> None:
        """Flush queued impressions and close."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    def log(self, user_id: str, impression: dict[str, Any]) -> None:
        if self._producer is None:
            IMPRESSIONS.labels("failed").inc()
            return
        task = asyncio.ensure_future(
            self._producer.send(self._topic, json.dumps(impression).encode(), key=user_id.encode())
        )
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        # An impression lost to a broker outage costs a few training examples,
        # never a failed request; count it and move on.
        if task.cancelled() or task.exception() is not None:
            IMPRESSIONS.labels("failed").inc()
            log.warning("impression not logged: %s", None if task.cancelled() else task.exception())
        else:
            IMPRESSIONS.labels("logged").inc()
