"""Create the topics streamrec reads and writes, with the right settings.

The changelog topics of the worker's tables are created here too, compacted
with :data:`streams.changelog.TOPIC_CONFIG`, so they are right before any
worker starts. Those that already exist with other values (created by an
older streamrec, or by faust with broker defaults) are altered to match:
they are streamrec's own internal topics, faust never alters a topic that
exists, and a changelog left at 1 GiB segments or ``cleanup.policy=delete``
silently defeats restarts in seconds (or loses idle shoppers' profiles).
Only the keys of ``TOPIC_CONFIG`` are set, through an incremental alter;
every change is logged, and a broker that refuses it (no ALTER_CONFIGS
permission) gets an error naming what differs, without stopping the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from online_learning.settings import LearningSettings
from online_learning.snapshot import TOPIC_CONFIG as SNAPSHOT_TOPIC_CONFIG
from streams import changelog
from streams.settings import StreamSettings

log = logging.getLogger(__name__)

Drift = dict[str, tuple[str | None, str]]  # config key -> (current value, wanted value)


def topic_specs(settings: StreamSettings, learning: LearningSettings | None = None) -> list[NewTopic]:
    """Every topic of the Kafka contract and every table changelog, with partitions and config."""
    partitions = settings.topic_partitions
    plain = [
        settings.topic_products,
        settings.topic_searches,
        settings.topic_clicks,
        settings.topic_purchases,
        settings.topic_impressions,
        settings.topic_dlq,
        settings.topic_item_deltas,
    ]
    specs = [NewTopic(name, partitions, 1) for name in plain]
    # Snapshots are read newest-per-key, so old ones can be compacted away;
    # a large catalog's snapshot exceeds the 1 MB default message size.
    specs.append(NewTopic(settings.topic_model, 1, 1, topic_configs=dict(SNAPSHOT_TOPIC_CONFIG)))
    # One partition: the model is learned by one learner, in order.
    specs.append(NewTopic((learning or LearningSettings()).topic_examples, 1, 1))
    # As many partitions as the input topics: faust recovers partition n of a
    # table from partition n of its changelog.
    specs += [
        NewTopic(name, partitions, 1, topic_configs=dict(changelog.TOPIC_CONFIG))
        for name in changelog.topic_names(settings.app_id)
    ]
    return specs


def config_drift(current: Mapping[str, str | None], wanted: Mapping[str, str]) -> Drift:
    """The keys of ``wanted`` whose ``current`` value differs, with both values.

    >>> config_drift({"segment.ms": "604800000", "cleanup.policy": "compact"},
    ...              {"segment.ms": "60000", "cleanup.policy": "compact"})
    {'segment.ms': ('604800000', '60000')}
    """
    return {key: (current.get(key), value) for key, value in wanted.items() if current.get(key) != value}


def ensure_topics(settings: StreamSettings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics and align the changelog topics' config; return the names that were created."""
    admin = KafkaAdminClient(
        **settings.connection().kafka_python(),
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process created it between our list and create
        older = [name for name in changelog.topic_names(settings.app_id) if name in existing]
        try:
            align_changelogs(admin, older)
        except KafkaError as exc:  # e.g. no DESCRIBE_CONFIGS permission: the topics still work, only compact less
            log.error("changelog topic settings not checked: %r", exc)
        return created
    finally:
        admin.close()


def align_changelogs(admin: KafkaAdminClient, topics: list[str]) -> dict[str, Drift]:
    """Set :data:`~streams.changelog.TOPIC_CONFIG` on existing changelog ``topics`` where it differs.

    Returns what differed per topic (empty when all match); logs each change,
    or an error when the broker refused it.
    """
    if not topics:
        return {}
    wanted = changelog.TOPIC_CONFIG
    described: dict[str, Any] = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, list(wanted)) for name in topics], config_filter="all"
    ).get("topic", {})
    drifts = {}
    for name in topics:
        current = {key: entry.get("value") for key, entry in described.get(name, {}).items()}
        if drift := config_drift(current, wanted):
            drifts[name] = drift
    if not drifts:
        return {}
    results: dict[str, Any] = admin.alter_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, {key: new for key, (_, new) in drift.items()})
            for name, drift in drifts.items()
        ],
        incremental=True,  # only these keys; a plain AlterConfigs resets every other key of the topic
    ).get("topic", {})
    for name, drift in drifts.items():
        changes = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in sorted(drift.items()))
        result = results.get(name, "no answer")
        if result == "OK":
            log.warning("changelog topic %s had other settings, now aligned: %s", name, changes)
        else:
            log.error("changelog topic %s differs (%s) and could not be altered: %s", name, changes, result)
    return drifts
