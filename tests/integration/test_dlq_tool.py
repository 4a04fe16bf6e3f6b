"""`streamrec dlq` against the real broker and the running system: inspect, then replay after a fix."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streamrec.cli import main
from streamrec.launcher import AllInOne, Publisher, click_event, wait_for
from streams.dlq import DeadLetter, read_dead_letters
from streams.settings import StreamSettings

pytestmark = pytest.mark.integration


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, stream_settings: StreamSettings) -> None:
    """`main()` exports --kafka and the log level to the environment; undo that after each test.

    stdin is never a terminal here, as in CI, and would answer "y" if asked.
    """
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", stream_settings.kafka_bootstrap)
    monkeypatch.setenv("STREAMREC_LOG_LEVEL", "warning")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


@pytest.fixture
def dlq_cli(capsys: pytest.CaptureFixture[str], stream_settings: StreamSettings) -> Cli:
    """Run `streamrec dlq <sub> --kafka <test broker> ...` in-process; returns (exit code, stdout, stderr)."""

    def run(sub: str, *argv: str) -> tuple[int, str, str]:
        code = main(["dlq", sub, "--kafka", stream_settings.kafka_bootstrap, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def clicks_log(stream_settings: StreamSettings) -> Iterator[KafkaConsumer]:
    """A group-less consumer assigned to every partition of the clicks topic."""
    consumer = KafkaConsumer(**stream_settings.connection().kafka_python(), group_id=None, enable_auto_commit=False)
    topic = stream_settings.topic_clicks
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    try:
        yield consumer
    finally:
        consumer.close()


def _ends(consumer: KafkaConsumer) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = consumer.end_offsets(list(consumer.assignment()))
    return ends


def _written_since(consumer: KafkaConsumer, starts: dict[TopicPartition, int]) -> list[ConsumerRecord]:
    """Every record between ``starts`` and the current end of each partition."""
    ends = _ends(consumer)
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + 10
    while any(consumer.position(tp) < ends[tp] for tp in starts) and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    return records


def test_inspect_lists_a_malformed_click_with_its_reason_and_origin(
    system: AllInOne, publisher: Publisher, stream_settings: StreamSettings, dlq_cli: Cli
) -> None:
    """A non-JSON click reaches the dead-letter topic and `dlq inspect --reason invalid_json` prints its line."""
    user = f"dlq-inspect-{uuid.uuid4().hex[:8]}"
    value = b'{"event_id": oops \x01 ' + user.encode()
    publisher.send_raw("click", user.encode(), value)
    publisher.flush()
    clicks = stream_settings.topic_clicks

    def dead_lettered() -> DeadLetter | None:
        letters = read_dead_letters(stream_settings, reasons={"invalid_json"}, source_topic=clicks)
        return next((letter for letter in letters if letter.key == user.encode()), None)

    letter: DeadLetter = wait_for(dead_lettered, timeout_s=15, interval_s=0.2)
    assert letter.value == value
    assert letter.source_offset >= 0

    code, out, _ = dlq_cli("inspect", "--reason", "invalid_json")
    assert code == 0
    lines = out.splitlines()
    mine = [line for line in lines if f" key={user} " in line]
    assert len(mine) == 1
    assert mine[0].startswith(f"{letter.partition}/{letter.offset} 20")
    origin = f"{clicks}/{letter.source_partition}/{letter.source_offset}"
    assert mine[0].endswith(f" invalid_json from {origin} key={user} value=" + '{"event_id": oops \\x01 ' + user)
    assert lines[-1] == f"dead letters: {len(lines) - 1} (invalid_json {len(lines) - 1})"

    code, out, err = dlq_cli("inspect", "--reason", "invalid_json", "--source-topic", clicks, "--json")
    assert code == 0
    bodies = [json.loads(line) for line in out.splitlines()]
    assert [(b["value"], b["value_encoding"], b["offset"]) for b in bodies if b["key"] == user] == [
        (value.decode(), "utf-8", letter.offset)
    ]
    assert err.splitlines()[-1] == f"dead letters: {len(bodies)} (invalid_json {len(bodies)})"


def test_replay_after_a_fix_personalizes_the_user(
    system: AllInOne,
    products: list[dict[str, Any]],
    stream_settings: StreamSettings,
    clicks_log: KafkaConsumer,
    dlq_cli: Cli,
) -> None:
    """A letter refused before a schema fix is replayed to its topic (not by a dry run or without --yes) and applies."""
    user = f"dlq-fix-{uuid.uuid4().hex[:8]}"
    product = next(p for p in products if p["in_stock"])
    assert not system.api.json("/v1/recommendations", user_id=user, k=5)["personalized"]
    clicks = stream_settings.topic_clicks
    since_ms = int(time.time() * 1000)
    headers = [
        ("reason", b"invalid_fields"),
        ("detail", b"simulated: refused before a schema fix"),
        ("source_topic", clicks.encode()),
        ("source_partition", b"0"),
        ("source_offset", b"0"),
    ]
    value = json.dumps(click_event(user, product["product_id"], position=1)).encode()
    producer = KafkaProducer(**stream_settings.connection().kafka_python(), acks="all")
    try:
        sent = producer.send(stream_settings.topic_dlq, key=user.encode(), value=value, headers=headers).get(10)
    finally:
        producer.close()
    since_iso = datetime.fromtimestamp(since_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    filters = ["--reason", "invalid_fields", "--source-topic", clicks]
    before = _ends(clicks_log)

    code, out, err = dlq_cli("replay", *filters, "--since", str(since_ms))
    assert (code, out) == (2, "")
    assert "--yes" in err

    code, out, _ = dlq_cli("replay", *filters, "--since", since_iso, "--dry-run")
    assert code == 0
    assert f"{sent.partition}/{sent.offset} " in out
    assert out.splitlines()[-1] == "would replay 1 of 1 selected letters; skipped: none"
    assert not [r for r in _written_since(clicks_log, before) if r.key == user.encode()]

    code, out, _ = dlq_cli("replay", *filters, "--since", str(since_ms), "--yes")
    assert code == 0
    assert out.splitlines()[-1] == "replayed 1 of 1 selected letters; skipped: none"
    replayed = [r for r in _written_since(clicks_log, before) if r.key == user.encode()]
    assert [(r.value, r.headers) for r in replayed] == [
        (value, [("replayed_from", f"{stream_settings.topic_dlq}/{sent.partition}/{sent.offset}".encode())])
    ]
    wait_for(lambda: system.api.json("/v1/recommendations", user_id=user, k=5)["personalized"], timeout_s=10)
