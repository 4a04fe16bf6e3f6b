"""Consumer lag per partition: end offset minus the group's committed offset.

Measured from the broker's view (like Kafka's consumer-groups tool), so it
counts what is not yet committed, not just what is not yet fetched; each
worker reports the partitions assigned to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from streamrec.kafka_client import KafkaConnection

log = logging.getLogger(__name__)

LAG = Gauge("streamrec_consumer_lag_messages", "Messages not yet committed by the worker group", ["topic", "partition"])


class LagProbe:
    """Reads end and committed offsets and exports their difference."""

    def __init__(self, kafka: KafkaConnection, group: str) -> None:
        self._kafka = kafka
        self._group = group
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reported: set[tuple[str, int]] = set()

    async def measure(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Lag of each (topic, partition); also sets the gauge and drops partitions no longer owned."""
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        if self._admin is None or self._consumer is None:
            self._admin = AIOKafkaAdminClient(**self._kafka.aiokafka())
            await self._admin.start()
            self._consumer = AIOKafkaConsumer(**self._kafka.aiokafka(), group_id=None)
            await self._consumer.start()
        lags: dict[tuple[str, int], int] = {}
        if tps:
            ends = await self._consumer.end_offsets(tps)
            committed = await self._admin.list_consumer_group_offsets(self._group, partitions=tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                lags[(tp.topic, tp.partition)] = max(0, ends[tp] - done)
        for key, lag in lags.items():
            LAG.labels(key[0], str(key[1])).set(lag)
        for gone in self._reported - set(lags):
            LAG.remove(gone[0], str(gone[1]))
        self._reported = set(lags)
        return lags

    async def close(self) -> None:
        """Close the admin client and consumer."""
        if self._admin is not None:
            await self._admin.close()
        if self._consumer is not None:
            await self._consumer.stop()
