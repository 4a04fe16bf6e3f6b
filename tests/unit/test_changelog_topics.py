"""Every table of a worker has a changelog topic configured to compact, and `streamrec topics` knows them all.

Also: the settings name every topic the worker's agents consume (what the
commit checks of the fault tests wait for).
"""

from __future__ import annotations

import asyncio

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streams import changelog
from streams.settings import StreamSettings
from streams.topics import config_drift, topic_specs
from streams.worker import StreamWorker


def test_every_table_of_the_worker_has_a_compacting_changelog() -> None:
    """The worker's tables are the ones ``changelog.TABLES`` names, each changelog with ``TOPIC_CONFIG``."""

    async def tables() -> dict[str, tuple[str, dict[str, str]]]:
        worker = StreamWorker(StreamSettings(app_id="unit-tables"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
        return {
            name: (table.changelog_topic.get_topic_name(), dict(table.changelog_topic.config))
            for name, table in worker.app.tables.items()
        }

    found = asyncio.run(tables())
    assert sorted(found) == sorted(changelog.TABLES)
    for name, (topic, config) in found.items():
        assert topic == changelog.topic_name("unit-tables", name)
        assert config == dict(changelog.TOPIC_CONFIG), f"{topic} would be created with broker defaults"


def test_input_topics_are_the_topics_the_agents_consume() -> None:
    """``StreamSettings.input_topics`` are exactly the topics the worker's agents subscribe to, each one created."""

    async def consumed() -> set[str]:
        worker = StreamWorker(StreamSettings(app_id="unit-inputs"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
        return {topic for agent in worker.app.agents.values() for topic in agent.channel.topics}

    settings = StreamSettings(app_id="unit-inputs")
    assert set(settings.input_topics()) == asyncio.run(consumed())
    assert set(settings.input_topics()) <= {spec.name for spec in topic_specs(settings)}


def test_no_topic_is_read_by_two_agents() -> None:
    """One stream per topic: a record read again is one copy with one reference, which must be the only reader's.

    Clicks and purchases were once read by the behavior and the label agent
    both; the quicker one's copy let the commit pass offsets the other had
    not applied (the soak test lost events after a kill -9).
    """

    async def readers() -> dict[str, list[str]]:
        worker = StreamWorker(StreamSettings(app_id="unit-readers"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
        found: dict[str, list[str]] = {}
        for name, agent in worker.app.agents.items():
            for topic in agent.channel.topics:
                found.setdefault(topic, []).append(name)
        return found

    shared = {topic: names for topic, names in asyncio.run(readers()).items() if len(names) > 1}
    assert shared == {}


def test_the_config_compacts_and_rolls_segments_small() -> None:
    """Compaction only, segments that roll within a minute or 16 MiB, cleaning at 10% dirty."""
    assert changelog.TOPIC_CONFIG == {
        "cleanup.policy": "compact",
        "segment.ms": "60000",
        "segment.bytes": "16777216",
        "min.cleanable.dirty.ratio": "0.1",
    }


def test_topic_specs_create_the_changelogs_with_the_input_partitions() -> None:
    """``streamrec topics`` creates each changelog with as many partitions as the input topics, and the config."""
    settings = StreamSettings(app_id="specs", topic_partitions=6)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    for name in changelog.topic_names("specs"):
        assert specs[name].num_partitions == 6
        assert specs[name].topic_configs == dict(changelog.TOPIC_CONFIG)


def test_drift_names_missing_and_different_keys_only() -> None:
    """A key absent from the topic counts as different; equal keys and extra keys of the topic do not."""
    current = {"cleanup.policy": "compact", "retention.ms": "1", "segment.ms": "604800000"}
    assert config_drift(current, {"cleanup.policy": "compact", "segment.ms": "60000", "segment.bytes": "9"}) == {
        "segment.ms": ("604800000", "60000"),
        "segment.bytes": (None, "9"),
    }
