"""Untrusted event times are clamped or rejected and counted; late events are applied and counted."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streams.events import Click, Rejection, decode
from streams.profiles import UserProfile
from streams.settings import StreamSettings
from streams.time_policy import TimePolicy, arrival_ms, enforce
from streams.updater import BehaviorUpdater

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
POLICY = StreamSettings().time_policy()


def click(ts: object, event_id: str = "e1") -> Click:
    """A decoded click at ``ts``."""
    raw = json.dumps({"event_id": event_id, "ts": ts, "schema_version": 1, "user_id": "u1", "product_id": "p1"})
    event = decode("clicks", raw.encode())
    assert isinstance(event, Click)
    return event


def out_of_range(verdict: str, action: str) -> float:
    """The counter of out-of-range times for a verdict and action."""
    labels = {"verdict": verdict, "action": action}
    return REGISTRY.get_sample_value("streamrec_timestamps_out_of_range_total", labels) or 0.0


@pytest.mark.parametrize(
    ("ts", "verdict"),
    [
        (NOW_MS + 3600_000, "future"),  # an hour ahead of arrival
        ("2027-06-01T00:00:00+02:00", "future"),  # a clock months ahead
        (0, "ancient"),  # epoch 0
        ("1999-12-31T23:59:59Z", "ancient"),
    ],
)
def test_out_of_range_times_are_clamped_to_arrival_and_counted(ts: object, verdict: str) -> None:
    """With the default clamp policy the event keeps its signal at its arrival time, and the verdict is counted."""
    before = out_of_range(verdict, "clamp")
    result = enforce(click(ts), b"raw", NOW_MS, POLICY)
    assert isinstance(result, Click)
    assert result.ts == NOW_MS
    assert out_of_range(verdict, "clamp") == before + 1


def test_reject_policy_dead_letters_with_the_original_bytes() -> None:
    """With the reject policy an out-of-range time becomes a ts_out_of_range rejection carrying the raw bytes."""
    policy = TimePolicy(max_future_ms=0, oldest_ms=0, action="reject")
    result = enforce(click(NOW_MS + 1), b"original", NOW_MS, policy)
    assert isinstance(result, Rejection)
    assert (result.reason, result.raw) == ("ts_out_of_range", b"original")


@pytest.mark.parametrize("ts", [NOW_MS, NOW_MS - 86_400_000 * 30, NOW_MS + 299_000, "2026-01-01T00:04:59"])
def test_plausible_times_pass_unchanged(ts: object) -> None:
    """Times within the bounds (past, or up to 5 minutes ahead; seconds or ISO) are kept as they are."""
    event = click(ts)
    assert enforce(event, b"", NOW_MS, POLICY) is event


def test_arrival_time_falls_back_to_now_without_a_record_timestamp() -> None:
    """A record without a timestamp arrives 'now'."""
    assert arrival_ms(1_767_225_600.5, 0.0) == 1_767_225_600_500
    assert arrival_ms(None, 1_767_225_600.0) == NOW_MS


def test_late_events_are_applied_and_counted() -> None:
    """An event far older than the shopper's newest still changes the profile, and counts as late."""
    updater = BehaviorUpdater(
        MemoryStore(), AsyncEncoder(HashingTextEncoder(8)), late_after_ms=60_000, park_unknown=False
    )
    profiles: dict[str, UserProfile] = {}

    def load(user_id: str) -> UserProfile:
        return profiles.setdefault(user_id, UserProfile(user_id, 1e9))

    before = REGISTRY.get_sample_value("streamrec_late_events_total") or 0.0
    folded = asyncio.run(updater.fold([click(NOW_MS, "new"), click(NOW_MS - 120_000, "old")], load))
    assert folded.applied == [True, True]
    assert REGISTRY.get_sample_value("streamrec_late_events_total") == before + 1
