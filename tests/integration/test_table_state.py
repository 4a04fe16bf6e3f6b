"""Persistent table state on the real broker: a restart reads only the changelog tail and keeps every profile.

Each test runs its own ``streamrec worker`` (own app id, topics, Milvus
collections and data directory: :func:`isolated_env`), so restarting it
disturbs nothing else in the session. The state a worker holds is read
from its RocksDB files once it has stopped, and compared with the newest
value of every key in the changelog (what a full recovery rebuilds).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rocksdict

from streamrec.launcher import (
    AllInOne,
    Publisher,
    changelog_state,
    click_event,
    fill_changelog,
    isolated_env,
    profile_history,
    wait_for,
)
from streamrec.localkafka import LocalKafka, free_port
from streamrec.sample_data import catalog
from streams.settings import StreamSettings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

OFFSET_KEY = b"__faust\0offset__"


def local_state(data_dir: Path, app_id: str, table: str) -> dict[str, Any]:
    """Every key and value in a stopped worker's RocksDB files of ``table`` (all partitions)."""
    state: dict[str, Any] = {}
    for path in sorted((data_dir / "v1" / f"tables-{app_id}").glob(f"{table}-*.db")):
        db = rocksdict.Rdict(
            str(path), options=rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
        )
        try:
            for key, value in db.items():
                if key != OFFSET_KEY:
                    state[json.loads(key)] = json.loads(value)
        finally:
            db.close()
    return state


class Worker:
    """One isolated worker process, restartable, with the settings to reach its topics."""

    def __init__(self, kafka: LocalKafka, system_env: dict[str, str], root: Path) -> None:
        self.app_id = f"state-{uuid.uuid4().hex[:8]}"
        self.data_dir = root / "worker"
        self.env = {**system_env, **isolated_env(self.app_id, self.data_dir)}
        self.settings = StreamSettings(
            kafka_bootstrap=kafka.bootstrap_servers,
            app_id=self.app_id,
            **{key.removeprefix("STREAMREC_").lower(): value for key, value in self.env.items() if "_TOPIC_" in key},
        )
        self.process = AllInOne(self.env, root / "worker.log", free_port(), "worker")

    def start(self) -> float:
        """Start; seconds until ready with the tables recovered."""
        started = time.monotonic()
        self.process.start()
        wait_for(self.process.api.recovered, timeout_s=300, interval_s=0.1)
        return time.monotonic() - started

    def recovered(self, table: str = "profiles") -> float:
        """Changelog records this process applied to ``table`` while recovering."""
        return self.process.api.counter("streamrec_table_recovered_records_total", table=table)

    def stop(self) -> None:
        """SIGTERM and a clean exit."""
        assert self.process.stop() == 0, self.process.log_tail(40)

    def state(self, table: str = "profiles") -> dict[str, Any]:
        """The stopped worker's local state of ``table``."""
        return local_state(self.data_dir, self.app_id, table)


@pytest.fixture
def worker(kafka: LocalKafka, system_env: dict[str, str], tmp_path: Path) -> Iterator[Worker]:
    """An isolated RocksDB-backed worker, stopped after the test."""
    started = Worker(kafka, system_env, tmp_path)
    try:
        yield started
    finally:
        started.process.stop()


def test_restart_and_wiped_state_both_keep_every_profile(worker: Worker) -> None:
    """Profiles built by real clicks: a restart reads only the tail and a wiped directory everything, same state."""
    shoppers, rounds = 30, 8
    worker.start()
    publisher = Publisher(worker.settings)
    try:
        publisher.send_all(("product", item) for item in catalog(40))
        wait_for(lambda: (worker.process.api.ready() or {}).get("products", 0) >= 40, timeout_s=120, interval_s=0.5)
        products = [str(item["product_id"]) for item in catalog(40)]
        publisher.send_all(
            ("click", click_event(f"s{u}", products[(u * rounds + r) % len(products)]))
            for r in range(rounds)
            for u in range(shoppers)
        )
    finally:
        publisher.close()
    processed = {"agent": "behavior", "outcome": "processed"}
    wait_for(
        lambda: worker.process.api.counter("streamrec_events_total", **processed) >= shoppers * rounds,
        timeout_s=180,
        interval_s=0.5,
    )
    worker.stop()
    before = worker.state()
    assert len(before) == shoppers
    assert all(profile["events"] == rounds for profile in before.values())
    assert before == changelog_state(worker.settings, "profiles")

    worker.start()
    assert worker.recovered() == 0, "the restart read changelog records the local state already held"
    worker.stop()
    assert worker.state() == before

    shutil.rmtree(worker.data_dir)
    worker.start()
    assert worker.recovered() >= shoppers, "a wiped data directory must be rebuilt from the whole changelog"
    worker.stop()
    assert worker.state() == before


def test_restart_with_100k_records_of_history_is_ready_in_seconds(worker: Worker) -> None:
    """100,000 profile changelog records (10,000 shoppers): the restart reads none of them and is ready < 60 s."""
    # 64-dim vectors keep the setup quick; the restart reads no record, so their size does not matter to it.
    ensure_topics(worker.settings)
    assert fill_changelog(worker.settings, "profiles", profile_history(10_000, 100_000, dim=64)) == 100_000
    first_s = worker.start()
    full = worker.recovered()
    worker.stop()

    restart_s = worker.start()
    tail = worker.recovered()
    worker.stop()
    print(f"first start {first_s:.1f} s ({full:.0f} records), restart {restart_s:.1f} s ({tail:.0f} records)")
    assert full >= 10_000
    assert tail == 0
    assert restart_s < 60
    assert worker.state() == changelog_state(worker.settings, "profiles")
