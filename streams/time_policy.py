"""What streamrec does with event times it cannot trust.

Event time (``ts``) drives decay, freshness and attribution windows, so a
producer with a broken clock must not be able to push a profile years ahead
or back. An event more than ``max_future_s`` ahead of its arrival time (the
Kafka record timestamp), or older than ``oldest``, is either clamped to its
arrival time (default: the signal is kept, the clock is not trusted) or
rejected to the dead-letter topic. Seconds versus milliseconds is settled by
the decoder (``streams.events.parse_ts``).

>>> policy = TimePolicy(max_future_ms=300_000, oldest_ms=946_684_800_000, action="clamp")
>>> policy.check(10_000_000_000_000, arrival_ms=1_767_225_600_000)
(1767225600000, 'future')
>>> policy.check(1_767_225_600_000, arrival_ms=1_767_225_600_000)
(1767225600000, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter

from streams.events import Event, Rejection

TimeAction = Literal["clamp", "reject"]
Verdict = Literal["future", "ancient"]

ADJUSTED = Counter(
    "streamrec_timestamps_out_of_range_total",
    "Events whose time was out of range, by verdict and action",
    ["verdict", "action"],
)


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """Bounds on event time relative to arrival time, and what to do outside them."""

    max_future_ms: int
    oldest_ms: int
    action: TimeAction

    def check(self, ts_ms: int, arrival_ms: int, count: bool = True) -> tuple[int, Verdict | None]:
        """The time to use and, if ``ts_ms`` was out of range, why (counted unless ``count`` is False)."""
        verdict: Verdict | None = None
        if ts_ms > arrival_ms + self.max_future_ms:
            verdict = "future"
        elif ts_ms < self.oldest_ms:
            verdict = "ancient"
        if verdict is None:
            return ts_ms, None
        if count:
            ADJUSTED.labels(verdict, self.action).inc()
        return arrival_ms, verdict


def arrival_ms(record_timestamp_s: float | None, now_s: float) -> int:
    """Arrival time in epoch ms: the Kafka record timestamp, or now when it has none."""
    return int((record_timestamp_s if record_timestamp_s else now_s) * 1000)


def enforce(event: Event, raw: bytes, arrival: int, policy: TimePolicy, count: bool = True) -> Event | Rejection:
    """The event with a trusted time, or a rejection when the policy says reject."""
    ts, verdict = policy.check(event.ts, arrival, count)
    if verdict is None:
        return event
    if policy.action == "reject":
        return Rejection("ts_out_of_range", f"ts {event.ts} is {verdict} (arrival {arrival})", raw)
    return event.model_copy(update={"ts": ts})
