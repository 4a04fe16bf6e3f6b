"""Hot-swapped ranking models on the API side.

``ModelHolder`` keeps the newest good snapshot; ``ModelWatcher`` follows the
model topic and hands each new snapshot to the holder, which refuses an
unhealthy one and keeps serving the last good model.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

from online_learning.learner import read_latest_snapshot
from online_learning.snapshot import CONSUMER_OPTIONS, SNAPSHOT_KEY, Snapshot
from streamrec.kafka_client import KafkaConnection

log = logging.getLogger(__name__)

MODEL_VERSION = Gauge("streamrec_model_version", "Version of the model the API ranks with (0: fixed blend)")
MODEL_AGE = Gauge("streamrec_model_age_seconds", "Age of the model the API ranks with")
MODEL_SWAPS = Counter("streamrec_model_swaps_total", "Snapshots received by the API", ["outcome"])


class ModelHolder:
    """The snapshot the API ranks with, if any."""

    def __init__(self, min_examples: int, min_auc: float) -> None:
        self._min_examples = min_examples
        self._min_auc = min_auc
        self.current: Snapshot | None = None
        MODEL_AGE.set_function(self._age_s)

    def _age_s(self) -> float:
        return 0.0 if self.current is None else max(0.0, time.time() - self.current.created_ms / 1000)

    def offer(self, snapshot: Snapshot) -> bool:
        """Swap in a newer healthy snapshot; keep the current one otherwise."""
        if self.current is not None and snapshot.version <= self.current.version:
            MODEL_SWAPS.labels("stale").inc()
            return False
        healthy, reason = snapshot.model.healthy(min_auc=self._min_auc)
        if not healthy:
            MODEL_SWAPS.labels("rejected").inc()
            log.warning("kept model v%s; rejected v%d: %s", self.version, snapshot.version, reason)
            return False
        self.current = snapshot
        MODEL_VERSION.set(snapshot.version)
        MODEL_SWAPS.labels("swapped").inc()
        return True

    @property
    def version(self) -> int:
        """Version served now (0 before the first snapshot)."""
        return 0 if self.current is None else self.current.version

    def serving(self) -> Snapshot | None:
        """The snapshot to rank with, once it has learned enough."""
        current = self.current
        return current if current is not None and current.model.learned >= self._min_examples else None


class ModelWatcher:
    """Follows the model topic and feeds the holder."""

    def __init__(self, holder: ModelHolder, kafka: KafkaConnection, topic: str) -> None:
        self._holder = holder
        self._kafka = kafka
        self._topic = topic
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the newest snapshot, then follow new ones in the background."""
        snapshot, end = await read_latest_snapshot(self._kafka, self._topic)
        if snapshot is not None:
            self._holder.offer(snapshot)
        self._task = asyncio.create_task(self._follow(end))

    async def _follow(self, offset: int) -> None:
        consumer = AIOKafkaConsumer(
            **self._kafka.aiokafka(), **CONSUMER_OPTIONS, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(self._topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.key == SNAPSHOT_KEY and record.value:
                        snapshot = Snapshot.loads(record.value)
                        if snapshot is not None and self._holder.offer(snapshot):
                            log.info("serving model v%d", snapshot.version)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
