"""RangeReader reads exactly the asked offsets of a partition, and a group's committed offset, from the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from faust.types import TP
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from streamrec.localkafka import LocalKafka
from streams.batching import RangeReader

pytestmark = pytest.mark.integration


def _topic(kafka: LocalKafka, values: list[bytes]) -> str:
    """A new one-partition topic holding ``values`` at offsets 0, 1, ..., keyed k0, k1, ..."""
    topic = f"range-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        for n, value in enumerate(values):
            producer.send(topic, key=f"k{n}".encode(), value=value, partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()
    return topic


def test_reads_the_records_of_a_range_in_order(kafka: LocalKafka) -> None:
    """Offsets 3..6 of ten records come back, in order, with their keys and values."""
    topic = _topic(kafka, [f"v{n}".encode() for n in range(10)])
    reader = RangeReader({"bootstrap_servers": kafka.bootstrap_servers})
    records = asyncio.run(reader(TP(topic, 0), 3, 7))
    assert [r.offset for r in records] == [3, 4, 5, 6]
    assert [(r.key, r.value) for r in records] == [(f"k{n}".encode(), f"v{n}".encode()) for n in range(3, 7)]


def test_a_range_past_the_end_times_out(kafka: LocalKafka) -> None:
    """Offsets the partition does not have yet are not waited for forever."""
    topic = _topic(kafka, [b"only"])
    reader = RangeReader({"bootstrap_servers": kafka.bootstrap_servers}, timeout_s=2)
    with pytest.raises(TimeoutError, match="not read within"):
        asyncio.run(reader(TP(topic, 0), 0, 5))


def test_committed_reads_the_groups_offset_without_joining_or_committing(kafka: LocalKafka) -> None:
    """The offset a group committed; for a group without a commit the partition's first offset; nothing committed."""
    topic = _topic(kafka, [f"v{n}".encode() for n in range(6)])
    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "", -1)})
    finally:
        consumer.close()
    reader = RangeReader({"bootstrap_servers": kafka.bootstrap_servers}, group=group)
    assert asyncio.run(reader.committed(TP(topic, 0))) == 4
    assert asyncio.run(reader.committed(TP(topic, 0))) == 4, "reading the offset moved it"
    stranger = RangeReader({"bootstrap_servers": kafka.bootstrap_servers}, group=f"none-{uuid.uuid4().hex[:8]}")
    assert asyncio.run(stranger.committed(TP(topic, 0))) == 0
    assert asyncio.run(RangeReader({"bootstrap_servers": kafka.bootstrap_servers}).committed(TP(topic, 0))) is None
