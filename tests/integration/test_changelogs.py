"""Changelog topics on the real broker: configured to compact, and no records for state that did not change."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.partitioner.default import murmur2

from streamrec.launcher import AllInOne, Publisher, click_event, wait_for
from streamrec.localkafka import LocalKafka
from streams import changelog
from streams.settings import StreamSettings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration


def _admin(settings: StreamSettings) -> KafkaAdminClient:
    return KafkaAdminClient(**settings.connection().kafka_python(), client_id="test-changelogs")


def _configs(settings: StreamSettings, topics: list[str]) -> dict[str, dict[str, str]]:
    """The values of ``TOPIC_CONFIG``'s keys on each topic, as the broker describes them."""
    admin = _admin(settings)
    try:
        keys = list(changelog.TOPIC_CONFIG)
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, keys) for name in topics], config_filter="all"
        )["topic"]
    finally:
        admin.close()
    return {name: {key: entry["value"] for key, entry in described[name].items()} for name in topics}


def test_the_worker_s_changelog_topics_compact_with_small_segments(
    system: AllInOne, stream_settings: StreamSettings, products: list[dict[str, Any]]
) -> None:
    """Every table's changelog on the broker has the compaction settings of ``changelog.TOPIC_CONFIG``."""
    topics = changelog.topic_names(stream_settings.app_id)
    assert _configs(stream_settings, topics) == {name: dict(changelog.TOPIC_CONFIG) for name in topics}


def test_an_existing_changelog_with_other_settings_is_aligned_and_the_missing_ones_created(kafka: LocalKafka) -> None:
    """``streamrec topics`` creates missing changelogs and sets the wanted keys on one created with defaults."""
    settings = StreamSettings(kafka_bootstrap=kafka.bootstrap_servers, app_id=f"align-{uuid.uuid4().hex[:8]}")
    old = changelog.topic_name(settings.app_id, "profiles")
    admin = _admin(settings)
    try:
        config = {"cleanup.policy": "delete", "segment.ms": "604800000", "retention.ms": "86400000"}
        admin.create_topics([NewTopic(old, settings.topic_partitions, 1, topic_configs=config)])
    finally:
        admin.close()
    created = ensure_topics(settings)
    topics = changelog.topic_names(settings.app_id)
    assert set(topics) - set(created) == {old}
    wanted = {name: dict(changelog.TOPIC_CONFIG) for name in topics}
    # New topics and altered configs reach the broker's metadata a moment after the call returns.
    try:
        wait_for(lambda: _configs(settings, topics) == wanted, timeout_s=30, interval_s=0.5)
    except TimeoutError:
        assert _configs(settings, topics) == wanted


def _records_since(settings: StreamSettings, topic: str, start: dict[int, int]) -> list[Any]:
    """Every record of ``topic`` from the ``start`` offset of each partition to its current end."""
    consumer = KafkaConsumer(**settings.connection().kafka_python(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(start)]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp.partition])
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += batch
    finally:
        consumer.close()
    return records


def _ends(settings: StreamSettings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**settings.connection().kafka_python(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _one_user_per_partition(prefix: str, partitions: int) -> dict[int, str]:
    """A user id for each partition of a user-keyed topic (the producer's murmur2 partitioner)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        user = f"{prefix}-{n}"
        found.setdefault((murmur2(user.encode()) & 0x7FFFFFFF) % partitions, user)
        n += 1
    return found


def test_clicks_without_a_request_id_write_no_label_join_records(
    system: AllInOne, publisher: Publisher, stream_settings: StreamSettings, products: list[dict[str, Any]]
) -> None:
    """Clicks that cannot join (no request id, no impression shown) add nothing to the label-join changelog.

    After them, one click per partition names an impression not seen yet: it
    must wait, so its shopper's state is written. The label agent handles a
    partition in order and writes its state to the same changelog partition,
    so once each marker's record is there the clicks before it were handled.
    """
    run = uuid.uuid4().hex[:8]
    topic = changelog.topic_name(stream_settings.app_id, "label-join")
    start = _ends(stream_settings, topic)
    users = [f"nojoin-{run}-{n}" for n in range(40)]
    markers = _one_user_per_partition(f"marker-{run}", stream_settings.topic_partitions)
    publisher.send_all(("click", click_event(user, products[n % 20]["product_id"])) for n, user in enumerate(users))
    publisher.send_all(
        ("click", click_event(user, products[0]["product_id"], request_id=f"unseen-{run}")) for user in markers.values()
    )

    def keys() -> set[str] | None:
        written = {record.key.decode() for record in _records_since(stream_settings, topic, start)}
        return written if all(any(user in key for key in written) for user in markers.values()) else None

    written = wait_for(keys, timeout_s=60, interval_s=1)
    wait_for(lambda: all(system.api.profile_events(user) == 1 for user in users), timeout_s=60, interval_s=0.5)
    nojoin = sorted(key for key in written if f"nojoin-{run}" in key)
    assert nojoin == [], f"{len(nojoin)} label-join records for {len(users)} clicks that joined nothing"
