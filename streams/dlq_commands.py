"""Rendering and the ``streamrec dlq inspect`` / ``replay`` commands over ``streams.dlq``."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import TextIO

from streams.dlq import (
    UNKNOWN,
    VALUE_PREVIEW_CHARS,
    DeadLetter,
    DeadLetterUnavailable,
    read_dead_letters,
    replay,
)
from streams.settings import StreamSettings


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds from ISO-8601 or an epoch number (below 1e11 read as seconds, as in the contract).

    >>> parse_time_ms("1767225600000"), parse_time_ms("1767225600")
    (1767225600000, 1767225600000)
    >>> parse_time_ms("2026-01-01T00:00:00Z"), parse_time_ms("2026-01-01")  # naive means UTC
    (1767225600000, 1767225600000)
    """
    text = text.strip()
    if text.isdigit():
        number = int(text)
        return number * 1000 if number < 100_000_000_000 else number
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def escape(data: bytes, limit: int = VALUE_PREVIEW_CHARS) -> str:
    r"""The first ``limit`` characters of ``data`` with backslashes, non-printables and bad UTF-8 escaped.

    >>> escape(b'{"q": "caf\xc3\xa9\n\x00"}\xff')
    '{"q": "café\\n\\x00"}\\xff'
    >>> escape(b"abcdef", limit=3)
    'abc...'
    """
    text = data.decode("utf-8", "surrogateescape")
    parts = []
    for char in text[:limit]:
        if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8
            parts.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char == "\\":
            parts.append("\\\\")
        elif char.isprintable():
            parts.append(char)
        else:
            parts.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(parts) + ("..." if len(text) > limit else "")


def _time(timestamp_ms: int) -> str:
    if timestamp_ms < 0:
        return UNKNOWN
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_line(letter: DeadLetter) -> str:
    """One line per letter: where it is, when, why, where it came from, key and value preview."""
    key = "-" if letter.key is None else escape(letter.key)
    source = f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}"
    return (
        f"{letter.partition}/{letter.offset} {_time(letter.timestamp_ms)} {letter.reason} "
        f"from {source} key={key} value={escape(letter.value)}"
    )


def _text_or_base64(data: bytes | None) -> tuple[str | None, str | None]:
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def render_json(letter: DeadLetter) -> str:
    """One JSON object per letter; key and value as UTF-8 text when they decode, else base64 (flagged)."""
    body: dict[str, object] = {f.name: getattr(letter, f.name) for f in fields(letter)}
    body["time"] = _time(letter.timestamp_ms)
    body["key"], body["key_encoding"] = _text_or_base64(letter.key)
    body["value"], body["value_encoding"] = _text_or_base64(letter.value)
    return json.dumps(body, ensure_ascii=False)


def summary(letters: Iterable[DeadLetter]) -> str:
    """Count by reason, most frequent first."""
    counts = Counter(letter.reason for letter in letters)
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"dead letters: {counts.total()}" + (f" ({by_reason})" if by_reason else "")


def _selected(
    settings: StreamSettings,
    err: TextIO,
    *,
    reasons: Sequence[str] | None,
    source_topic: str | None,
    since: str | None,
    limit: int | None,
) -> Iterator[DeadLetter]:
    """The letters the command-line filters pick; raises ValueError at once for a bad ``since``."""
    return read_dead_letters(
        settings,
        reasons=set(reasons) if reasons else None,
        source_topic=source_topic,
        since_ms=None if since is None else parse_time_ms(since),
        limit=limit,
        progress=lambda read, total: print(f"read {read}/{total} dead letters", file=err, flush=True),
    )


def inspect_command(
    settings: StreamSettings,
    *,
    reasons: Sequence[str] | None,
    source_topic: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """``streamrec dlq inspect``: print the selected letters, then a count by reason; returns the exit code."""
    try:
        selected = _selected(settings, err, reasons=reasons, source_topic=source_topic, since=since, limit=limit)
    except ValueError as exc:
        print(f"error: --since {since!r}: {exc}", file=err)
        return 2
    letters = []
    try:
        for letter in selected:
            print(render_json(letter) if as_json else render_line(letter), file=out)
            letters.append(letter)
    except DeadLetterUnavailable as exc:
        print(f"error: {exc}", file=err)
        return 1
    # JSON lines stay machine-readable: the summary goes to stderr there.
    print(summary(letters), file=err if as_json else out)
    return 0


def replay_command(
    settings: StreamSettings,
    *,
    reasons: Sequence[str] | None,
    source_topic: str | None,
    since: str | None,
    limit: int | None,
    dry_run: bool,
    yes: bool,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
) -> int:
    """``streamrec dlq replay``: show the plan, confirm, replay, print the report; returns the exit code."""
    if not (yes or dry_run or stdin.isatty()):
        print("refusing to replay: stdin is not a terminal to confirm on; pass --yes (or --dry-run)", file=err)
        return 2
    try:
        selected = _selected(settings, err, reasons=reasons, source_topic=source_topic, since=since, limit=limit)
    except ValueError as exc:
        print(f"error: --since {since!r}: {exc}", file=err)
        return 2
    try:
        letters = list(selected)
        for letter in letters:
            print(render_line(letter), file=out)
        plan = replay(settings, letters, dry_run=True)
        print(plan.text(), file=out)
        if dry_run or plan.eligible == 0:
            return 0
        if not yes:
            print(f"replay {plan.eligible} letters to their source topics? [y/N] ", end="", file=out, flush=True)
            if stdin.readline().strip().lower() not in ("y", "yes"):
                print("nothing replayed", file=out)
                return 1
        print(replay(settings, letters, dry_run=False).text(), file=out)
    except DeadLetterUnavailable as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0
