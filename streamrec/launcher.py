"""Run and drive a whole streamrec system from outside: used by the demo and tests.

``AllInOne`` starts ``streamrec all-in-one`` as a child process against a
broker and a Milvus Lite file; ``Publisher`` writes contract events to Kafka;
``ApiClient`` reads the HTTP API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams import changelog
from streams.events import Click
from streams.profiles import ProductInfo, UserProfile
from streams.settings import StreamSettings

KIND_TOPIC = {
    "product": "topic_products",
    "search": "topic_searches",
    "click": "topic_clicks",
    "purchase": "topic_purchases",
}


def click_event(
    user_id: str, product_id: str, request_id: str | None = None, position: int | None = None
) -> dict[str, Any]:
    """A click as the contract spells it, stamped now with a fresh event id."""
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "ts": int(time.time() * 1000),
        "schema_version": 1,
        "user_id": user_id,
        "product_id": product_id,
    }
    if request_id is not None:
        event["request_id"] = request_id
    if position is not None:
        event["position"] = position
    return event


class Publisher:
    """Publishes contract events, keyed by user id or product id."""

    def __init__(self, settings: StreamSettings) -> None:
        self._settings = settings
        self._producer = KafkaProducer(
            **settings.connection().kafka_python(),
            acks="all",
            linger_ms=5,
            client_id="streamrec-publisher",
        )

    def topic(self, kind: str) -> str:
        """Topic name for an event kind (product, search, click, purchase)."""
        name: str = getattr(self._settings, KIND_TOPIC[kind])
        return name

    def send(self, kind: str, event: Mapping[str, Any]) -> None:
        """Queue one event; keyed by ``user_id`` or ``product_id`` as the contract says."""
        key = str(event.get("user_id") or event.get("product_id") or "")
        self.send_raw(kind, key.encode(), json.dumps(event).encode())

    def send_raw(self, kind: str, key: bytes | None, value: bytes | None) -> None:
        """Queue one message of raw bytes (for bad-input tests and replays)."""
        self._producer.send(self.topic(kind), key=key, value=value)

    def send_all(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Queue many (kind, event) pairs and wait until the broker has them all."""
        count = 0
        for kind, event in events:
            self.send(kind, event)
            count += 1
        self.flush()
        return count

    def flush(self) -> None:
        """Wait until every queued message is acknowledged."""
        self._producer.flush(timeout=60)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=10)


class ApiClient:
    """A minimal JSON client for the streamrec HTTP API."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def get(self, path: str, **params: object) -> tuple[int, dict[str, Any]]:
        """GET a path; returns (status, JSON body)."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def json(self, path: str, **params: object) -> dict[str, Any]:
        """GET a path that must answer 200."""
        status, body = self.get(path, **params)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body}")
        return body

    def metric(self, name: str, **labels: str) -> float | None:
        """A metric from ``/metrics`` summed over the samples whose labels include ``labels``; None if none."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=self._timeout_s) as response:
            text = response.read().decode()
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        return sum(values) if values else None

    def counter(self, name: str, **labels: str) -> float:
        """Like :meth:`metric`, with 0 for a counter not exported yet (no label set used so far)."""
        return self.metric(name, **labels) or 0.0

    def profile_events(self, user_id: str) -> int:
        """How many events the shopper's served profile reflects (0 for an unknown shopper)."""
        status, body = self.get(f"/v1/users/{urllib.parse.quote(user_id, safe='')}")
        return int(body["features"]["events"]) if status == 200 else 0

    def recovered(self) -> bool:
        """Whether the worker finished a recovery of its tables (rebalance complete) since it started."""
        try:
            return (self.metric("streamrec_recovery_seconds_count") or 0) >= 1
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def ready(self) -> dict[str, Any] | None:
        """The readiness body, or None while the API is not up or not ready."""
        try:
            status, body = self.get("/readyz")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        return body if status == 200 else None


class AllInOne:
    """``streamrec all-in-one`` (or another subcommand) as a child process.

    ``port`` is where the process answers ``/readyz`` and ``/metrics``: the
    API port of ``all-in-one``, the worker's own web port of ``worker``.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, api_port: int, command: str = "all-in-one") -> None:
        port_variable = "STREAMREC_WORKER_WEB_PORT" if command == "worker" else "STREAMREC_API_PORT"
        self._env = {**os.environ, **env, port_variable: str(api_port)}
        self._command = command
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.api = ApiClient(f"http://127.0.0.1:{api_port}")

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the process and wait until the API reports ready."""
        self.spawn()
        self.wait_ready(timeout_s)

    def spawn(self) -> None:
        """Start the process in a session of its own (so :meth:`kill` reaches its children); do not wait."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "streamrec.cli", self._command],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Wait until the process reports ready; stop it and raise if it exits or is not ready in time."""
        process = self._process
        if process is None:
            raise RuntimeError(f"{self._command} was not started")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{self._command} exited with {process.returncode}:\n{self.log_tail()}")
            if self.api.ready() is not None:
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self._command} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process log."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM, wait for a clean exit, then SIGKILL; returns the exit code."""
        process = self._process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, for fault tests)."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)


def isolated_env(name: str, data_dir: Path) -> dict[str, str]:
    """Settings giving a worker its own app id, topics, Milvus collections and data directory.

    A test or benchmark worker then shares the broker and Milvus server of
    the session without reading or changing anyone else's state.
    """
    topics = ("products", "searches", "clicks", "purchases", "impressions", "model", "dlq", "item_deltas", "examples")
    collections = ("products", "users", "items")
    return {
        "STREAMREC_APP_ID": name,
        "STREAMREC_DATA_DIR": str(data_dir),
        **{f"STREAMREC_TOPIC_{topic.upper()}": f"{name}.{topic}" for topic in topics},
        **{f"STREAMREC_{c.upper()}_COLLECTION": f"{name.replace('-', '_')}_{c}" for c in collections},
    }


def profile_history(shoppers: int, events: int, dim: int = 384, seed: int = 7) -> Iterable[tuple[str, dict[str, Any]]]:
    """``events`` changelog values of the profiles table: each click of ``shoppers`` shoppers, as it saves one.

    What a worker leaves in the ``profiles`` changelog after that many
    clicks when every event writes its shopper's whole profile (as before
    batch folding): the history a memory-store restart replays.
    """
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((64, dim)).astype(np.float32)
    profiles = [UserProfile(f"hist-{i}", 7 * 24 * 3600 * 1000.0) for i in range(shoppers)]
    start_ms = int(time.time() * 1000) - events
    for n in range(events):
        profile = profiles[n % shoppers]
        product = ProductInfo(vectors[n % 64], f"c{n % 7}", f"b{n % 5}", 10.0 + n % 90)
        click = Click(
            event_id=f"e{n}", ts=start_ms + n, schema_version=1, user_id=profile.user_id, product_id=f"p{n % 997}"
        )
        profile.apply(click, product, None)
        yield profile.user_id, profile.to_dict()


def fill_changelog(settings: StreamSettings, table: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Write ``(key, value)`` records to ``table``'s changelog as faust would (JSON, partitioned by key)."""
    producer = KafkaProducer(
        **settings.connection().kafka_python(),
        acks=1,
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        client_id="streamrec-history",
    )
    topic = changelog.topic_name(settings.app_id, table)
    count = 0
    try:
        for key, value in records:
            producer.send(topic, key=json.dumps(key).encode(), value=json.dumps(value).encode())
            count += 1
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)
    return count


def changelog_state(settings: StreamSettings, table: str) -> dict[str, Any]:
    """The newest value of every key in ``table``'s changelog (what a full recovery rebuilds)."""
    topic = changelog.topic_name(settings.app_id, table)
    consumer = KafkaConsumer(**settings.connection().kafka_python(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        state: dict[str, Any] = {}
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                for record in batch:
                    key = json.loads(record.key)
                    if record.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = json.loads(record.value)
        return state
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def uncommitted(settings: StreamSettings, topics: Iterable[str] | None = None) -> dict[tuple[str, int], int]:
    """Records past the worker group's committed offset, per (topic, partition) behind; ``{}`` when all is committed.

    ``topics`` defaults to every input topic of the workers. Asks the broker
    only: the consumer neither joins the group nor commits.
    """
    consumer = KafkaConsumer(**settings.connection().kafka_python(), group_id=settings.app_id, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in (settings.input_topics() if topics is None else topics)
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
        behind = {(tp.topic, tp.partition): ends[tp] - (consumer.committed(tp) or 0) for tp in partitions}
    finally:
        consumer.close()
    return {tp: n for tp, n in behind.items() if n > 0}


def wait_committed(
    settings: StreamSettings, timeout_s: float, topics: Iterable[str] | None = None
) -> dict[tuple[str, int], int]:
    """Wait up to ``timeout_s`` for the group to commit to the end of ``topics``; what is still behind (``{}``: all)."""
    names = settings.input_topics() if topics is None else tuple(topics)
    deadline = time.monotonic() + timeout_s
    while (behind := uncommitted(settings, names)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return behind
