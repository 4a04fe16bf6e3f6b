"""A snapshot of a large catalog's model is bigger than Kafka's 1 MB default and still goes through the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from online_learning.item_stats import ItemStats
from online_learning.learner import read_latest_snapshot
from online_learning.model import RankingModel
from online_learning.snapshot import PRODUCER_OPTIONS, SNAPSHOT_KEY, Snapshot
from streams.settings import StreamSettings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

ITEMS = 60_000


def test_a_snapshot_over_one_megabyte_is_published_and_read_back(stream_settings: StreamSettings) -> None:
    """Model topic made by ``ensure_topics``, the learner's producer options, the readers' fetch path."""
    topic = f"snapshots-{uuid.uuid4().hex[:8]}"
    settings = stream_settings.model_copy(update={"topic_model": topic})
    assert topic in ensure_topics(settings)
    items = ItemStats(86_400)
    for i in range(ITEMS):
        items.record(f"product-{i:06d}", 1.0, float(i % 3 == 0), 1_767_225_600_000 + i)
    snapshot = Snapshot(7, 1_767_225_600_000, RankingModel.create("logreg", 0), items, {0: 41})
    payload = snapshot.dumps()
    assert len(payload) > 1024 * 1024, "the snapshot would fit the default limit: the test proves nothing"

    async def publish_and_read() -> tuple[Snapshot | None, int]:
        producer = AIOKafkaProducer(**settings.connection().aiokafka(), **PRODUCER_OPTIONS)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=SNAPSHOT_KEY)
        finally:
            await producer.stop()
        return await read_latest_snapshot(settings.connection(), topic)

    restored, end = asyncio.run(publish_and_read())
    assert end == 1
    assert restored is not None
    assert (restored.version, restored.offsets) == (7, {0: 41})
    assert len(restored.items.views) == ITEMS
    assert restored.items.ctr("product-000003") == pytest.approx(items.ctr("product-000003"))
