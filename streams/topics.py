"""Create the topics streamrec reads and writes, with the right settings."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from online_learning.settings import LearningSettings
from online_learning.snapshot import TOPIC_CONFIG as SNAPSHOT_TOPIC_CONFIG
from streams.settings import StreamSettings


def topic_specs(settings: StreamSettings, learning: LearningSettings | None = None) -> list[NewTopic]:
    """Every topic of the Kafka contract with its partitions and config."""
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
    return specs


def ensure_topics(settings: StreamSettings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; return the names that were created."""
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
        return created
    finally:
        admin.close()
