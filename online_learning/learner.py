"""The learner: examples in, model snapshots out.

Offsets are managed by the snapshots, not by a consumer group commit: on
assignment the learner loads the newest snapshot and seeks just past the
offsets it reflects, so a restart neither relearns nor skips an example.
The examples topic has one partition, so one learner (the group's only
active member) owns the model at a time.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from prometheus_client import Counter, Gauge

from online_learning.dedup import RecentIds
from online_learning.item_stats import ItemStats
from online_learning.join import Example
from online_learning.model import RankingModel
from online_learning.settings import LearningSettings
from online_learning.snapshot import CONSUMER_OPTIONS, PRODUCER_OPTIONS, SNAPSHOT_KEY, Snapshot
from streamrec.kafka_client import KafkaConnection

log = logging.getLogger(__name__)

LEARNED = Counter("streamrec_model_examples_total", "Examples learned", ["label"])
DUPLICATES = Counter(
    "streamrec_model_duplicate_examples_total", "Examples skipped because one with the same id was learned recently"
)
LOG_LOSS = Gauge("streamrec_model_progressive_logloss", "Progressive validation log loss of the learner's model")
AUC = Gauge("streamrec_model_progressive_auc", "Progressive validation ROC AUC of the learner's model")
RECENT_AUC = Gauge(
    "streamrec_model_recent_auc", "Progressive validation ROC AUC of the learner's model over its last 500 examples"
)
SNAPSHOTS = Counter("streamrec_model_snapshots_total", "Snapshots considered for publishing", ["outcome"])


async def read_latest_snapshot(
    kafka: KafkaConnection, topic: str, timeout_s: float = 15.0
) -> tuple[Snapshot | None, int]:
    """The newest valid snapshot on the model topic and the offset after it.

    Raises ``TimeoutError`` if the topic cannot be read to its end in time:
    a learner that started from scratch instead would learn examples twice.
    """
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka(), **CONSUMER_OPTIONS, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, 0)
        latest: Snapshot | None = None
        read_to = 0
        deadline = time.monotonic() + timeout_s
        while read_to < end and await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {read_to} of {end} records of {topic} in {timeout_s} s")
            batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                read_to = record.offset + 1
                if record.key == SNAPSHOT_KEY and record.value:
                    latest = Snapshot.loads(record.value) or latest
        return latest, end
    finally:
        await consumer.stop()


class Learner:
    """Learns examples one at a time and publishes healthy snapshots."""

    def __init__(
        self,
        settings: LearningSettings,
        kafka: KafkaConnection,
        model_topic: str,
        group: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._kafka = kafka
        self._model_topic = model_topic
        self._group = group
        self._clock = clock
        self.model = RankingModel.create(settings.model_kind, settings.model_seed)
        self.items = ItemStats(settings.item_half_life_s)
        self.offsets: dict[int, int] = {}
        self.recent = RecentIds(settings.example_dedup_window)
        self.version = 0
        self._published_learned = 0  # an untrained model is never published
        self._assigned = False
        self._unrestored: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    def restore(self, snapshot: Snapshot) -> None:
        """Continue from a snapshot."""
        self.model, self.items = snapshot.model, snapshot.items
        self.offsets, self.version = dict(snapshot.offsets), snapshot.version
        self.recent = RecentIds(self.settings.example_dedup_window, snapshot.recent_examples)
        self._published_learned = self.model.learned

    def learn(self, example: Example, partition: int, offset: int) -> None:
        """Learn one example read at ``partition``/``offset``; skip what a snapshot holds and recent duplicates."""
        if offset <= self.offsets.get(partition, -1):
            return
        self.offsets[partition] = offset
        if not self.recent.add(example.example_id):
            DUPLICATES.inc()
            return
        self.model.learn(example.features, example.label, example.weight)
        self.items.record(
            example.product_id,
            viewed=1.0 if example.first else 0.0,
            clicked=example.weight if example.label else 0.0,
            at_ms=example.ts,
        )
        LEARNED.labels("positive" if example.label else "negative").inc()

    def snapshot(self) -> Snapshot | None:
        """A snapshot to publish, or None if nothing new or the model is unhealthy."""
        if self.model.learned == self._published_learned:
            return None
        LOG_LOSS.set(self.model.log_loss.get())
        AUC.set(self.model.auc.get())
        RECENT_AUC.set(self.model.recent_auc.get())
        healthy, reason = self.model.healthy(min_auc=self.settings.min_auc)
        if not healthy:
            SNAPSHOTS.labels("rejected").inc()
            log.warning("model not published: %s", reason)
            return None
        self.version += 1
        self._published_learned = self.model.learned
        self.items.prune(100_000)
        items = copy.deepcopy(self.items)  # the learner keeps counting; the snapshot must not move
        return Snapshot(
            self.version,
            int(self._clock() * 1000),
            self.model.clone(),
            items,
            dict(self.offsets),
            recent_examples=self.recent.to_bytes(),
        )

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned = bool(assigned)
        self._unrestored = set(assigned)
        if not assigned:
            return
        assert self._consumer is not None
        # Nothing is read until the snapshot is restored and the position set:
        # learning from the group's default position would learn twice.
        self._consumer.pause(*assigned)
        try:
            await self._restore(assigned)
        except (TimeoutError, OSError) as exc:
            log.warning("could not restore the model yet, retrying: %s", exc)

    async def _restore(self, assigned: set[TopicPartition]) -> None:
        snapshot, _ = await read_latest_snapshot(self._kafka, self._model_topic)
        if snapshot is not None:
            self.restore(snapshot)
            log.info("learner resumed from snapshot v%d (%d examples)", snapshot.version, snapshot.model.learned)
        assert self._consumer is not None
        for tp in assigned:
            if tp.partition in self.offsets:
                self._consumer.seek(tp, self.offsets[tp.partition] + 1)
            else:
                await self._consumer.seek_to_beginning(tp)
        self._unrestored = set()
        self._consumer.resume(*assigned)

    async def run(self) -> None:
        """Consume examples until cancelled, publishing a snapshot every interval."""
        learner = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                # Hand over what was learned; before the first assignment there
                # is nothing to hand over (and publishing then would race the
                # restore below with a blank model).
                if learner._assigned:
                    await learner.publish()

            async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                await learner._on_assigned(assigned)

        self._consumer = AIOKafkaConsumer(
            **self._kafka.aiokafka(),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._producer = AIOKafkaProducer(**self._kafka.aiokafka(), **PRODUCER_OPTIONS)
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([self.settings.topic_examples], listener=Listener())
        next_snapshot = time.monotonic() + self.settings.snapshot_interval_s
        try:
            while True:
                if self._unrestored:
                    try:
                        await self._restore(self._unrestored)
                    except (TimeoutError, OSError) as exc:
                        log.warning("could not restore the model yet, retrying: %s", exc)
                        await asyncio.sleep(1.0)
                        continue
                batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batches.items():
                    for record in records:
                        self._learn_record(tp.partition, record)
                if time.monotonic() >= next_snapshot:
                    if self._assigned:  # only the owner of the examples partition publishes
                        await self.publish()
                    next_snapshot = time.monotonic() + self.settings.snapshot_interval_s
        finally:
            if self._assigned:
                await self.publish()
            await self._consumer.stop()
            await self._producer.stop()

    def _learn_record(self, partition: int, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            example = Example.from_dict(json.loads(record.value or b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            # Examples are written by our own join; a bad one is a bug, not input.
            log.error("skipping malformed example at %d/%d: %s", partition, record.offset, exc)
            self.offsets[partition] = record.offset
            return
        self.learn(example, partition, record.offset)

    async def publish(self) -> None:
        """Publish a snapshot if there is a new healthy one."""
        snapshot = self.snapshot()
        if snapshot is None or self._producer is None:
            return
        await self._producer.send_and_wait(self._model_topic, snapshot.dumps(), key=SNAPSHOT_KEY)
        SNAPSHOTS.labels("published").inc()
        log.info("published model v%d (%d examples)", snapshot.version, snapshot.model.learned)
