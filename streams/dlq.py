"""Read and replay the dead-letter topic: the library behind ``streamrec dlq``.

A dead letter is a message the worker could not accept, kept with its
original key and bytes and the headers ``reason``, ``detail``,
``source_topic``, ``source_partition`` and ``source_offset``
(see ``StreamWorker._dead_letter``). ``read_dead_letters`` reads the topic up
to its end as it was when the read began, without a consumer group;
``replay`` sends chosen letters back to the topics they came from, e.g. after
a schema fix. Broker failures raise ``DeadLetterUnavailable`` (retriable).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from streamrec.errors import StreamrecError
from streams.events import EVENT_KINDS
from streams.settings import StreamSettings

# A read waits this long for the next records before giving up: generous for
# a broker under load, short enough that a dead broker fails a command fast.
READ_TIMEOUT_S = 30.0
PROGRESS_EVERY = 1000
VALUE_PREVIEW_CHARS = 80
UNKNOWN = "unknown"
# The worker keeps only the first ``max_event_bytes`` of an oversized message,
# so its letter does not hold the original bytes and must not be replayed.
TRUNCATED_REASONS = frozenset({"too_large"})

Progress = Callable[[int, int], None]  # (letters read, letters in the topic)


class DeadLetterUnavailable(StreamrecError):
    """The dead-letter topic or a source topic could not be read or written in time."""

    retriable = True


class _Record(Protocol):
    """What a kafka-python ``ConsumerRecord`` offers that a dead letter needs."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Iterable[Any] | None: ...


class _Future(Protocol):
    def get(self, timeout: float | None = None) -> object: ...


class Producer(Protocol):
    """The part of ``kafka.KafkaProducer`` a replay uses (injected in tests)."""

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> _Future: ...
    def flush(self, timeout: float | None = None) -> None: ...


def _headers(raw: object) -> dict[str, str]:
    """Header name -> text, first occurrence wins; anything malformed is skipped."""
    found: dict[str, str] = {}
    if not isinstance(raw, list | tuple):
        return found
    for item in raw:
        if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
            continue
        name, value = item
        if name not in found and isinstance(value, bytes | str):
            found[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return found


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else -1
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of the dead-letter topic, with the cause and origin from its headers."""

    offset: int  # in the dead-letter topic
    partition: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int

    @classmethod
    def from_record(cls, record: _Record) -> DeadLetter:
        """Build from a consumer record; missing or garbled headers read as "unknown" or -1, never raise."""
        headers = _headers(record.headers)
        key = record.key.encode() if isinstance(record.key, str) else record.key
        return cls(
            offset=record.offset,
            partition=record.partition,
            timestamp_ms=record.timestamp if isinstance(record.timestamp, int) else -1,
            key=key if isinstance(key, bytes) else None,
            value=record.value if isinstance(record.value, bytes) else b"",
            reason=headers.get("reason") or UNKNOWN,
            detail=headers.get("detail", ""),
            source_topic=headers.get("source_topic") or UNKNOWN,
            source_partition=_int(headers.get("source_partition")),
            source_offset=_int(headers.get("source_offset")),
        )


def matches(letter: DeadLetter, *, reasons: set[str] | None, source_topic: str | None, since_ms: int | None) -> bool:
    """Whether a letter passes every given filter (None means no filter)."""
    return (
        (reasons is None or letter.reason in reasons)
        and (source_topic is None or letter.source_topic == source_topic)
        and (since_ms is None or letter.timestamp_ms >= since_ms)
    )


def _records_to_end(consumer: Any, topic: str, timeout_s: float, progress: Progress | None) -> Iterator[Any]:
    """Every record of ``topic`` from the beginning to the end offsets of now, per partition in order."""
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    if not tps:
        return  # no dead-letter topic yet: nothing was ever dead-lettered
    consumer.assign(tps)
    begins, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    remaining = {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}
    total = sum(ends[tp] - begins[tp] for tp in tps)
    for tp in tps:
        consumer.seek(tp, begins[tp])
    read = 0
    last_records = time.monotonic()
    while remaining:
        batches = consumer.poll(timeout_ms=500)
        if batches:
            last_records = time.monotonic()
        elif time.monotonic() - last_records > timeout_s:
            positions = {tp.partition: consumer.position(tp) for tp in remaining}
            raise DeadLetterUnavailable("dead-letter read stalled", topic=topic, positions=positions)
        for tp, records in batches.items():
            end = remaining.get(tp, -1)
            for record in records:
                if record.offset >= end:
                    break
                read += 1
                if progress is not None and read % PROGRESS_EVERY == 0:
                    progress(read, total)
                yield record
        for tp in [tp for tp in remaining if consumer.position(tp) >= remaining[tp]]:
            del remaining[tp]
            consumer.pause(tp)


def read_dead_letters(
    settings: StreamSettings,
    *,
    reasons: set[str] | None = None,
    source_topic: str | None = None,
    since_ms: int | None = None,
    limit: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    progress: Progress | None = None,
) -> Iterator[DeadLetter]:
    """The letters that pass the filters, oldest first per partition, up to ``limit``.

    Reads from the beginning to the end offsets taken when the read starts
    (letters written later are left for the next read), with no consumer
    group, so nothing is committed. ``progress`` is called every
    ``PROGRESS_EVERY`` letters read. Raises ``DeadLetterUnavailable`` when no
    records arrive for ``timeout_s`` before the end is reached.
    """
    consumer: Any = None
    try:
        consumer = KafkaConsumer(
            **settings.connection().kafka_python(),
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,  # inspecting must not create the topic
            client_id=f"{settings.app_id}-dlq-reader",
        )
        letters = map(DeadLetter.from_record, _records_to_end(consumer, settings.topic_dlq, timeout_s, progress))
        chosen = (x for x in letters if matches(x, reasons=reasons, source_topic=source_topic, since_ms=since_ms))
        yield from itertools.islice(chosen, limit)
    except KafkaError as exc:
        raise DeadLetterUnavailable(f"dead-letter topic not readable: {exc}", topic=settings.topic_dlq) from exc
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)


def input_topics(settings: StreamSettings) -> frozenset[str]:
    """The topics streamrec consumes events from: the only places a replay may write."""
    return frozenset(getattr(settings, f"topic_{kind}") for kind in EVENT_KINDS)


def skip_reason(settings: StreamSettings, letter: DeadLetter) -> str | None:
    """Why a letter must not be replayed, or None when it may be."""
    if letter.source_topic not in input_topics(settings):
        return "not_an_input_topic"
    if letter.reason in TRUNCATED_REASONS:
        return "truncated_value"
    return None


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    selected: int
    replayed: int
    skipped: Mapping[str, int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def eligible(self) -> int:
        """Letters that pass the replay checks."""
        return self.selected - sum(self.skipped.values())

    def text(self) -> str:
        """One line for people."""
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())) or "none"
        done = f"would replay {self.eligible}" if self.dry_run else f"replayed {self.replayed}"
        return f"{done} of {self.selected} selected letters; skipped: {skipped}"


def replay(
    settings: StreamSettings,
    letters: Iterable[DeadLetter],
    *,
    dry_run: bool,
    producer: Producer | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> ReplayReport:
    """Send each letter's original key and value back to its source topic; wait for every ack.

    Only streamrec's input topics are written to; other letters, and letters
    whose value was truncated, are counted as skipped. Each message carries a
    ``replayed_from`` header naming the letter (``<dlq topic>/<partition>/<offset>``).
    Replaying an event twice is harmless for profiles: the worker skips an
    event id it applied among a user's recent events. A letter that is still
    invalid simply returns to the dead-letter topic with its reason.
    """
    skipped: Counter[str] = Counter()
    chosen: list[DeadLetter] = []
    for letter in letters:
        reason = skip_reason(settings, letter)
        if reason is None:
            chosen.append(letter)
        else:
            skipped[reason] += 1
    selected = len(chosen) + skipped.total()
    if dry_run or not chosen:
        return ReplayReport(selected, 0, dict(skipped), dry_run)
    own: Any = None
    try:
        if producer is None:
            own = KafkaProducer(
                **settings.connection().kafka_python(), acks="all", client_id=f"{settings.app_id}-dlq-replay"
            )
        sender: Producer = producer or own
        futures = [
            sender.send(
                letter.source_topic,
                value=letter.value,
                key=letter.key,
                headers=[("replayed_from", f"{settings.topic_dlq}/{letter.partition}/{letter.offset}".encode())],
            )
            for letter in chosen
        ]
        sender.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
    except KafkaError as exc:
        raise DeadLetterUnavailable(f"replay not acknowledged: {exc}", letters=len(chosen)) from exc
    finally:
        if own is not None:
            own.close(timeout=timeout_s)
    return ReplayReport(selected, len(chosen), dict(skipped), dry_run)
