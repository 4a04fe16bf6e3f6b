"""The local KRaft broker that deploy/kafka/kafka-local.sh runs is a real, usable Kafka."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamrec.localkafka import LocalKafka, free_port

MESSAGES = 100


@pytest.mark.integration
def test_local_broker_round_trips_100_messages_in_order_and_stops(tmp_path: Path) -> None:
    """A LocalKafka broker delivers 100 produced messages back in order, restarts idempotently and stops."""
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    topic = "localkafka-roundtrip"
    expected = [f"message-{i:03d}".encode() for i in range(MESSAGES)]
    try:
        broker.start()
        assert broker.is_running()
        pid = (broker.data_dir / "kafka.pid").read_text().strip()
        broker.start()  # already running for this data dir: a no-op, not a second JVM
        assert (broker.data_dir / "kafka.pid").read_text().strip() == pid

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
        try:
            # The topic does not exist yet: the broker auto-creates it (one partition).
            futures = [producer.send(topic, key=b"k", value=value) for value in expected]
            producer.flush(timeout=60)
            offsets = [future.get(timeout=60).offset for future in futures]
        finally:
            producer.close(timeout=10)
        assert offsets == list(range(MESSAGES))

        consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            received: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + 60
            while len(received) < MESSAGES and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    received.extend((record.offset, record.value) for record in records)
        finally:
            consumer.close()
        assert [offset for offset, _ in received] == list(range(MESSAGES))
        assert [value for _, value in received] == expected
    finally:
        broker.stop()
    assert not broker.is_running()
