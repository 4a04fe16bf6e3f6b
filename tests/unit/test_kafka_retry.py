"""A Kafka write the broker could not take right now is waited out: never dead-lettered, never skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streamrec.errors import InjectedFault, StoreUnavailable
from streams import changelog
from streams.contain import apply_contained
from streams.events import Rejection
from streams.fakes import MemoryTable, MemoryTopic
from streams.retry import retriable, with_retries
from streams.settings import StreamSettings
from streams.worker import StreamWorker


def _send_error(cause: BaseException) -> ProducerSendError:
    try:
        raise ProducerSendError(f"Error while sending: {cause!r}") from cause
    except ProducerSendError as exc:
        return exc


BLINKS = [
    kafka_errors.KafkaTimeoutError(),
    kafka_errors.NotLeaderForPartitionError(),
    kafka_errors.RequestTimedOutError(),
    kafka_errors.KafkaConnectionError("connection reset"),
    kafka_errors.LeaderNotAvailableError(),
    kafka_errors.NotEnoughReplicasError(),
    kafka_errors.BrokerNotAvailableError(),
    kafka_errors.NodeNotReadyError(),
    _send_error(kafka_errors.KafkaTimeoutError()),
    StoreUnavailable("milvus down"),
]
NOT_BLINKS = [
    kafka_errors.MessageSizeTooLargeError(),
    kafka_errors.RecordTooLargeError(),
    kafka_errors.TopicAuthorizationFailedError(),
    kafka_errors.ProducerClosed(),
    _send_error(kafka_errors.MessageSizeTooLargeError()),
    ProducerSendError("no transaction producer"),
    InjectedFault("poison"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("error", BLINKS, ids=lambda e: type(e).__name__)
def test_broker_blinks_are_retriable(error: Exception) -> None:
    """Leader moves, timeouts, lost connections, an unreachable Milvus: a retry may succeed."""
    assert retriable(error)


@pytest.mark.parametrize("error", NOT_BLINKS, ids=lambda e: type(e).__name__)
def test_errors_of_the_record_or_the_code_are_not(error: Exception) -> None:
    """Too large, not authorised, a closed producer, a bug: retrying would loop forever."""
    assert not retriable(error)


def test_with_retries_waits_out_a_blink_and_raises_anything_else_at_once() -> None:
    """Two timeouts then success returns the result; a non-retriable error is raised on the first attempt."""
    failures: list[Exception] = [kafka_errors.KafkaTimeoutError(), kafka_errors.NotLeaderForPartitionError()]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "done"

    assert asyncio.run(with_retries("flaky", flaky, delays_s=[0])) == "done"
    assert calls == 3

    async def too_large() -> None:
        nonlocal calls
        calls += 1
        raise kafka_errors.MessageSizeTooLargeError()

    calls = 0
    with pytest.raises(kafka_errors.MessageSizeTooLargeError):
        asyncio.run(with_retries("too large", too_large, delays_s=[0]))
    assert calls == 1


class DeadLetters:
    """Collects dead letters."""

    def __init__(self) -> None:
        self.letters: list[tuple[bytes, Rejection]] = []

    async def __call__(self, event: Any, rejection: Rejection, agent: str) -> None:
        self.letters.append((event.value, rejection))


@pytest.mark.parametrize("on_send", [False, True], ids=["future-fails", "send-fails"])
def test_a_changelog_write_the_broker_fails_six_times_is_retried_not_dead_lettered(on_send: bool) -> None:
    """More failures than a batch and its poison retries absorb: the batch waits, is applied, nothing dead-lettered."""
    blinks = [kafka_errors.RequestTimedOutError() for _ in range(6)]
    if on_send:
        blinks = [_send_error(kafka_errors.KafkaTimeoutError()) for _ in range(6)]
    table = MemoryTable("profiles", MemoryTopic("profiles-changelog", blinks, on_send=on_send))
    dead = DeadLetters()

    async def apply(batch: Sequence[tuple[Any, str]]) -> None:
        records = [(0, key, {"v": 1}) for _, key in batch]
        await changelog.write(table, records, delays_s=[0.01])  # type: ignore[arg-type]

    items = [(SimpleNamespace(value=key.encode()), key) for key in ("a", "b")]
    assert asyncio.run(apply_contained("behavior", items, apply, dead, attempts=3, backoff_s=0)) == 0
    assert dead.letters == [], "a healthy event was dead-lettered because the broker blinked"
    assert dict(table.data) == {"a": {"v": 1}, "b": {"v": 1}}
    assert [key for _, key, _ in table.changelog_topic.acked] == ["a", "b"]


def test_a_failed_changelog_write_sets_nothing_locally() -> None:
    """A write that fails for good (not retriable) leaves the local table as it was."""
    table = MemoryTable("profiles", MemoryTopic("c", [kafka_errors.MessageSizeTooLargeError()]))
    with pytest.raises(kafka_errors.MessageSizeTooLargeError):
        asyncio.run(changelog.write(table, [(0, "a", {"v": 1})]))  # type: ignore[arg-type]
    assert dict(table.data) == {}


def test_the_dead_letter_write_waits_out_a_broker_blink() -> None:
    """A dead letter whose write times out twice is written on the third try, once, with its reason."""

    async def scenario() -> MemoryTopic:
        worker = StreamWorker(StreamSettings(app_id="unit-dlq"), MemoryStore(), AsyncEncoder(HashingTextEncoder(8)))
        dlq = MemoryTopic("dlq", [kafka_errors.KafkaTimeoutError(), kafka_errors.NotLeaderForPartitionError()])
        worker.dlq = dlq  # type: ignore[assignment]
        rejection = Rejection("invalid_json", "not JSON", b"{oops")
        await worker._dead_letter_record(rejection, "behavior", topic="clicks", partition=1, offset=7, key=b"u")
        return dlq

    dlq = asyncio.run(scenario())
    assert dlq.sends == 3
    [(_, key, value)] = dlq.acked
    assert (key, value) == (b"u", b"{oops")
