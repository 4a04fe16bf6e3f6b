"""A real Kafka broker and a real all-in-one streamrec process, shared by a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamrec.launcher import AllInOne, Publisher, wait_for
from streamrec.localkafka import LocalKafka, free_port
from streamrec.localmilvus import LocalMilvus
from streamrec.sample_data import catalog
from streams.settings import StreamSettings

PRODUCTS = 240
POISON = "failpoint-poison-"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fault tests last: they kill, stop and restart the shared system, which the other tests should not see."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single-node KRaft broker on loopback, stopped after the session."""
    broker = LocalKafka(data_dir=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def system_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """State directory of the all-in-one process (Milvus Lite file, worker data, log)."""
    return tmp_path_factory.mktemp("streamrec")


@pytest.fixture(scope="session")
def stream_settings(kafka: LocalKafka) -> StreamSettings:
    """Settings pointing at the test broker."""
    return StreamSettings(kafka_bootstrap=kafka.bootstrap_servers)


@pytest.fixture(scope="session")
def milvus(system_dir: Path) -> Iterator[LocalMilvus]:
    """Milvus Lite as a server on loopback: the server-URI path, shared by every process of the session."""
    server = LocalMilvus(system_dir / "milvus" / "milvus.db", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def system_env(kafka: LocalKafka, milvus: LocalMilvus, system_dir: Path) -> dict[str, str]:
    """The environment of the all-in-one process (also for more workers in scaling tests)."""
    return {
        "STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "STREAMREC_MILVUS_URI": milvus.uri,
        "STREAMREC_DATA_DIR": str(system_dir / "worker"),
        "STREAMREC_WORKER_WEB_PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
        # Short windows and frequent snapshots so learning shows within seconds.
        "STREAMREC_ATTRIBUTION_WINDOW_S": "3",
        "STREAMREC_JOIN_TICK_S": "0.5",
        "STREAMREC_SNAPSHOT_INTERVAL_S": "1",
        "STREAMREC_MIN_EXAMPLES_TO_SERVE": "40",
        # Clicks on products that never arrive are dead-lettered after this (parking tests).
        "STREAMREC_PARK_MAX_S": "6",
        # A killed worker's partitions are taken over after this (chaos tests).
        "STREAMREC_SESSION_TIMEOUT_S": "10",
        # Events with these ids fail in processing every time (poison-message tests).
        "STREAMREC_FAILPOINTS": f"behavior.event={POISON}*;catalog.event={POISON}*",
    }


@pytest.fixture(scope="session")
def system(system_env: dict[str, str], system_dir: Path) -> Iterator[AllInOne]:
    """``streamrec all-in-one`` against the test broker and Milvus server."""
    process = AllInOne(
        system_env,
        system_dir / "streamrec.log",
        api_port=free_port(),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def poison_prefix() -> str:
    """Events whose id starts with this fail in processing every time in ``system`` (armed failpoints)."""
    return POISON


@pytest.fixture(scope="session")
def publisher(stream_settings: StreamSettings) -> Iterator[Publisher]:
    """A producer of contract events on the test broker."""
    producer = Publisher(stream_settings)
    try:
        yield producer
    finally:
        producer.close()


@pytest.fixture(scope="session")
def products(system: AllInOne, publisher: Publisher) -> list[dict[str, Any]]:
    """The sample catalog, published and fully indexed."""
    items = catalog(PRODUCTS)
    publisher.send_all(("product", item) for item in items)
    wait_for(lambda: (system.api.ready() or {}).get("products", 0) >= PRODUCTS, timeout_s=120, interval_s=0.5)
    return items
