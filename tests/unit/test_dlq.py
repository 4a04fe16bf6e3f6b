"""The dead-letter tool without a broker: parsing letters, filters, rendering, replay plans."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streams import dlq, dlq_commands
from streams.dlq import DeadLetter, ReplayReport, replay
from streams.dlq_commands import render_json, render_line
from streams.settings import StreamSettings

SETTINGS = StreamSettings(kafka_bootstrap="127.0.0.1:1")  # never contacted
HEADERS = [
    ("reason", b"invalid_json"),
    ("detail", b"Expecting value: line 1 column 1 (char 0)"),
    ("source_topic", b"streamrec.clicks"),
    ("source_partition", b"2"),
    ("source_offset", b"41"),
]


def _record(
    value: bytes | None = b"not json", key: bytes | None = b"u1", headers: Any = HEADERS, **fields: Any
) -> ConsumerRecord:
    base = {"topic": "streamrec.dlq", "partition": 1, "offset": 7, "timestamp": 1767225600123}
    base |= fields
    return ConsumerRecord(
        base["topic"],
        base["partition"],
        -1,
        base["offset"],
        base["timestamp"],
        0,
        key,
        value,
        headers,
        None,
        -1,
        -1,
        -1,
    )


LETTER = DeadLetter.from_record(_record())


def test_from_record_reads_every_header() -> None:
    """A well-formed record gives its dlq position, time, key, bytes, cause and origin."""
    assert DeadLetter.from_record(_record()) == DeadLetter(
        offset=7,
        partition=1,
        timestamp_ms=1767225600123,
        key=b"u1",
        value=b"not json",
        reason="invalid_json",
        detail="Expecting value: line 1 column 1 (char 0)",
        source_topic="streamrec.clicks",
        source_partition=2,
        source_offset=41,
    )


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        "reason=invalid_json",
        [("reason", None), ("source_topic", b""), ("source_partition", b"two"), ("source_offset", b"")],
        [("reason",), ("source_topic", b"a", b"b"), (b"source_partition", b"2"), 42],
    ],
    ids=["none", "empty", "not-a-list", "empty-or-garbled-values", "malformed-items"],
)
def test_from_record_never_raises_on_missing_or_garbled_headers(headers: Any) -> None:
    """Missing or garbled headers read as "unknown" and -1 instead of raising."""
    letter = DeadLetter.from_record(_record(headers=headers))
    assert (letter.reason, letter.source_topic) == ("unknown", "unknown")
    assert (letter.source_partition, letter.source_offset) == (-1, -1)
    assert letter.value == b"not json"


def test_from_record_decodes_bad_utf8_headers_and_keeps_the_first_duplicate() -> None:
    """Non-UTF-8 header bytes are replaced, not fatal; a repeated header keeps its first value."""
    letter = DeadLetter.from_record(_record(headers=[("reason", b"bad\xff"), ("reason", b"other"), *HEADERS[1:]]))
    assert letter.reason == "bad\ufffd"
    assert letter.source_offset == 41


def test_from_record_turns_tombstones_and_missing_timestamps_into_defaults() -> None:
    """A tombstone value reads as empty bytes, no key as None, no timestamp as -1."""
    letter = DeadLetter.from_record(_record(value=None, key=None, timestamp=None))
    assert (letter.value, letter.key, letter.timestamp_ms) == (b"", None, -1)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, True),
        ({"reasons": {"invalid_json", "empty"}}, True),
        ({"reasons": {"empty"}}, False),
        ({"source_topic": "streamrec.clicks"}, True),
        ({"source_topic": "streamrec.searches"}, False),
        ({"since_ms": 1767225600123}, True),
        ({"since_ms": 1767225600124}, False),
        ({"reasons": {"invalid_json"}, "source_topic": "streamrec.searches"}, False),
    ],
)
def test_matches_applies_every_given_filter(filters: dict[str, Any], expected: bool) -> None:
    """A letter is selected only when it passes every filter given (reason, source topic, since)."""
    given: dict[str, Any] = {"reasons": None, "source_topic": None, "since_ms": None} | filters
    assert dlq.matches(LETTER, **given) is expected


def test_render_line_shows_position_time_cause_origin_key_and_escaped_value() -> None:
    """One line names dlq partition/offset, UTC time, reason, source and key, and escapes the value."""
    letter = replace(LETTER, value=b'{"q": "caf\xc3\xa9\n\x00\x1b[31m\\"}\xff')
    assert render_line(letter) == (
        "1/7 2026-01-01T00:00:00.123Z invalid_json from streamrec.clicks/2/41 "
        'key=u1 value={"q": "café\\n\\x00\\x1b[31m\\\\"}\\xff'
    )


def test_render_line_cuts_long_values_and_marks_missing_keys() -> None:
    """A value is shown to 80 characters then "..."; a letter without a key shows "-"."""
    line = render_line(replace(LETTER, key=None, value=b"x" * 200, timestamp_ms=-1))
    assert " unknown invalid_json " in line
    assert line.endswith("key=- value=" + "x" * 80 + "...")


def test_render_json_flags_base64_for_values_that_are_not_utf8() -> None:
    """JSON output carries non-UTF-8 bytes as base64 flagged as such, and UTF-8 as text."""
    raw = b"\xff\xfe\x00binary"
    body = json.loads(render_json(replace(LETTER, value=raw)))
    assert body["value_encoding"] == "base64"
    assert base64.b64decode(body["value"]) == raw
    assert (body["key"], body["key_encoding"]) == ("u1", "utf-8")
    assert body["source_offset"] == 41
    assert body["time"] == "2026-01-01T00:00:00.123Z"
    text = json.loads(render_json(replace(LETTER, key=None, value="café".encode())))
    assert (text["value"], text["value_encoding"], text["key"], text["key_encoding"]) == ("café", "utf-8", None, None)


def test_summary_counts_by_reason_most_frequent_first() -> None:
    """The summary totals the letters and counts them by reason, most frequent first."""
    letters = [LETTER, replace(LETTER, reason="empty"), LETTER]
    assert dlq_commands.summary(letters) == "dead letters: 3 (invalid_json 2, empty 1)"
    assert dlq_commands.summary([]) == "dead letters: 0"


def test_parse_time_ms_rejects_text_that_is_no_time() -> None:
    """A --since that is neither ISO-8601 nor a number is a ValueError, not a silent no-filter."""
    with pytest.raises(ValueError, match="Invalid isoformat"):
        dlq_commands.parse_time_ms("yesterday")


@dataclass
class _Sent:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: Any


@dataclass
class FakeProducer:
    """Records sends; every send is acknowledged."""

    sent: list[_Sent] = field(default_factory=list)
    flushed: int = 0

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> Any:
        self.sent.append(_Sent(topic, value, key, headers))
        return self

    def get(self, timeout: float | None = None) -> object:
        return None

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1


LETTERS = [
    LETTER,
    replace(LETTER, offset=8, source_topic="streamrec.model"),
    replace(LETTER, offset=9, source_topic="unknown"),
    replace(LETTER, offset=10, reason="too_large"),
    replace(LETTER, offset=11, partition=3, key=None, value=b'{"ok": 1}', source_topic="streamrec.searches"),
]


def test_replay_sends_original_bytes_to_the_source_topic_with_a_replayed_from_header() -> None:
    """Replay republishes key and value to the source topic, names the letter, and flushes before reporting."""
    producer = FakeProducer()
    report = replay(SETTINGS, LETTERS, dry_run=False, producer=producer)
    assert report == ReplayReport(selected=5, replayed=2, skipped={"not_an_input_topic": 2, "truncated_value": 1})
    assert producer.sent == [
        _Sent("streamrec.clicks", b"not json", b"u1", [("replayed_from", b"streamrec.dlq/1/7")]),
        _Sent("streamrec.searches", b'{"ok": 1}', None, [("replayed_from", b"streamrec.dlq/3/11")]),
    ]
    assert producer.flushed == 1
    assert report.text() == "replayed 2 of 5 selected letters; skipped: not_an_input_topic 2, truncated_value 1"


def test_replay_dry_run_sends_nothing() -> None:
    """A dry run reports what would be replayed and sends nothing."""
    producer = FakeProducer()
    report = replay(SETTINGS, LETTERS, dry_run=True, producer=producer)
    assert (producer.sent, report.replayed, report.eligible) == ([], 0, 2)
    assert report.text().startswith("would replay 2 of 5 selected letters")


def test_replay_command_refuses_without_yes_when_stdin_is_not_a_terminal() -> None:
    """Without --yes and without a terminal to confirm on, replay exits 2 before touching Kafka."""
    err = io.StringIO()
    code = dlq_commands.replay_command(
        SETTINGS,
        reasons=None,
        source_topic=None,
        since=None,
        limit=None,
        dry_run=False,
        yes=False,
        stdin=io.StringIO(""),
        out=io.StringIO(),
        err=err,
    )
    assert code == 2
    assert "--yes" in err.getvalue()


def test_inspect_command_rejects_a_bad_since_with_exit_2() -> None:
    """A --since that does not parse is a usage error (exit 2) before any read."""
    err = io.StringIO()
    code = dlq_commands.inspect_command(
        SETTINGS,
        reasons=None,
        source_topic=None,
        since="last tuesday",
        limit=None,
        as_json=False,
        out=io.StringIO(),
        err=err,
    )
    assert code == 2
    assert "--since 'last tuesday'" in err.getvalue()


class FakeConsumer:
    """A consumer over fixed partitions; ``late`` records arrive after the end offsets were taken."""

    def __init__(self, records: dict[int, int], late: int = 0) -> None:
        self.ends = {TopicPartition("streamrec.dlq", p): n for p, n in records.items()}
        self.logs = {
            tp: [_record(partition=tp.partition, offset=o) for o in range(n + late)] for tp, n in self.ends.items()
        }
        self.positions: dict[TopicPartition, int] = {}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.ends}

    def assign(self, tps: list[TopicPartition]) -> None:
        assert set(tps) == set(self.ends)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self.ends)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        batches = {}
        for tp, log in self.logs.items():
            batch = log[self.positions[tp] : self.positions[tp] + 500]
            if batch:
                batches[tp] = batch
                self.positions[tp] += len(batch)
        return batches

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def pause(self, tp: TopicPartition) -> None:
        self.logs[tp] = []


def _scan(consumer: FakeConsumer, progress: list[tuple[int, int]]) -> Iterator[Any]:
    return dlq._records_to_end(consumer, "streamrec.dlq", 1.0, lambda read, total: progress.append((read, total)))


def test_read_stops_at_the_end_offsets_taken_when_it_began() -> None:
    """Records written after the read began are not returned and do not keep it waiting."""
    progress: list[tuple[int, int]] = []
    records = list(_scan(FakeConsumer({0: 3, 1: 0, 2: 2}, late=4), progress))
    assert sorted((r.partition, r.offset) for r in records) == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]


def test_long_reads_report_progress_every_thousand_letters() -> None:
    """Progress is reported every 1000 letters read, with the total to read."""
    progress: list[tuple[int, int]] = []
    assert len(list(_scan(FakeConsumer({0: 1500, 1: 1000}), progress))) == 2500
    assert progress == [(1000, 2500), (2000, 2500)]
