"""Batches of shopper events folded into profiles and published; replays converge on the saved state."""

from __future__ import annotations

import asyncio
import copy

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore
from streams.events import Click, UserEvent
from streams.profiles import UserProfile
from streams.updater import BehaviorUpdater

NOW_MS = 1_767_225_600_000


def click(user_id: str, event_id: str, product_id: str = "p1") -> Click:
    """A click by ``user_id``."""
    return Click(event_id=event_id, ts=NOW_MS, schema_version=1, user_id=user_id, product_id=product_id)


class Saved:
    """Profiles as the changelogged table holds them (copies, like a round trip through the changelog)."""

    def __init__(self) -> None:
        self.profiles: dict[str, UserProfile] = {}

    def load(self, user_id: str) -> UserProfile:
        saved = self.profiles.get(user_id)
        return copy.deepcopy(saved) if saved is not None else UserProfile(user_id, 1e9)

    def save(self, profiles: dict[str, tuple[UserProfile, int]]) -> None:
        for user_id, (profile, _) in profiles.items():
            self.profiles[user_id] = copy.deepcopy(profile)


def updater(store: MemoryStore) -> BehaviorUpdater:
    """An updater over ``store`` with a small deterministic encoder."""
    return BehaviorUpdater(store, AsyncEncoder(HashingTextEncoder(8)))


def test_fold_reports_changed_profiles_with_their_last_event_index() -> None:
    """Each user appears once, with the index of their last event in the batch."""
    events: list[UserEvent] = [click("a", "1"), click("b", "2"), click("a", "3")]
    folded = asyncio.run(updater(MemoryStore()).fold(events, Saved().load))
    assert {user: index for user, (_, index) in folded.profiles.items()} == {"a": 2, "b": 1}
    assert folded.profiles["a"][0].events == 2
    assert folded.applied == [True, True, True]
    assert folded.replayed == {}


def test_replay_after_a_crash_between_save_and_publish_republishes_the_saved_profile() -> None:
    """The profile was saved but its serving row never written: the replayed batch writes it, counting nothing twice."""
    store, saved = MemoryStore(), Saved()
    batch: list[UserEvent] = [click("a", "1"), click("a", "2"), click("b", "3")]
    first = asyncio.run(updater(store).fold(batch, saved.load))
    saved.save(first.profiles)  # the changelog write landed; the process died before publishing
    assert store.get_user("a") is None

    replay = asyncio.run(updater(store).fold(batch, saved.load))
    assert replay.applied == [False, False, False]
    assert replay.duplicates == 3
    assert replay.profiles == {}
    assert set(replay.replayed) == {"a", "b"}
    asyncio.run(updater(store).publish([], list(replay.replayed.values())))
    user_a, user_b = store.get_user("a"), store.get_user("b")
    assert user_a is not None
    assert user_b is not None
    assert (user_a.features["events"], user_b.features["events"]) == (2, 1)


def test_a_user_with_duplicates_and_new_events_is_changed_not_replayed() -> None:
    """A replayed prefix followed by a new event makes one changed profile holding every event once."""
    store, saved = MemoryStore(), Saved()
    first = asyncio.run(updater(store).fold([click("a", "1")], saved.load))
    saved.save(first.profiles)
    folded = asyncio.run(updater(store).fold([click("a", "1"), click("a", "2")], saved.load))
    assert folded.applied == [False, True]
    assert folded.replayed == {}
    assert folded.profiles["a"][0].events == 2
    assert folded.profiles["a"][1] == 1
