"""Batches of shopper events folded into profiles and published; replays converge on the saved state."""

from __future__ import annotations

import asyncio
import copy

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore, ProductRow
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


def updater(store: MemoryStore, known: tuple[str, ...] = ("p1",)) -> BehaviorUpdater:
    """An updater over ``store`` (holding the ``known`` products) with a small deterministic encoder."""
    encoder = HashingTextEncoder(8)
    store.upsert_products(
        [
            ProductRow(p, encoder.encode([p])[0], p, "shoes", "swift", 10.0, True, NOW_MS, "hashing-8")
            for p in known
            if store.get_products([p]) == {}
        ]
    )
    return BehaviorUpdater(store, AsyncEncoder(encoder))


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


def test_clicks_on_unknown_products_are_parked_not_applied() -> None:
    """An unknown product's click is reported for parking and changes nothing; a known one in the same batch applies."""
    store, saved = MemoryStore(), Saved()
    batch: list[UserEvent] = [click("a", "1", "missing"), click("a", "2"), click("b", "3", "missing")]
    folded = asyncio.run(updater(store).fold(batch, saved.load))
    assert folded.parked == [0, 2]
    assert folded.applied == [False, True, False]
    assert [folded.outcome(i) for i in range(3)] == ["parked", "processed", "parked"]
    assert folded.duplicates == 0
    assert set(folded.profiles) == {"a"}
    assert folded.profiles["a"][0].recent_items == ["p1"]
    assert folded.replayed == {}


def test_a_parked_click_applies_once_its_product_is_known_and_is_a_duplicate_after() -> None:
    """Retried after the product arrived, the click applies with the product; again, it is a duplicate."""
    store, saved = MemoryStore(), Saved()
    late = click("a", "1", "late")
    assert asyncio.run(updater(store).fold([late], saved.load)).parked == [0]
    folded = asyncio.run(updater(store, known=("late",)).fold([late], saved.load))
    assert (folded.parked, folded.applied) == ([], [True])
    profile = folded.profiles["a"][0]
    assert profile.categories.normalized(top=1) == {"shoes": 1.0}
    saved.save(folded.profiles)
    again = asyncio.run(updater(store).fold([late], saved.load))
    assert (again.parked, again.applied, again.duplicates) == ([], [False], 1)


def test_a_replayed_click_is_a_duplicate_even_when_its_product_has_gone() -> None:
    """Dedup comes first: an applied click whose product was deleted since is not parked again."""
    store, saved = MemoryStore(), Saved()
    first = asyncio.run(updater(store, known=("gone",)).fold([click("a", "1", "gone")], saved.load))
    saved.save(first.profiles)
    store.delete_products(["gone"])
    replay = asyncio.run(updater(store, known=()).fold([click("a", "1", "gone")], saved.load))
    assert (replay.parked, replay.duplicates) == ([], 1)
    assert set(replay.replayed) == {"a"}


def test_without_parking_an_unknown_product_click_applies_without_a_vector() -> None:
    """``park_unknown=False`` keeps the click (recent items, counts) without product features."""
    store = MemoryStore()
    folded = asyncio.run(
        BehaviorUpdater(store, AsyncEncoder(HashingTextEncoder(8)), park_unknown=False).fold(
            [click("a", "1", "missing")], Saved().load
        )
    )
    assert (folded.parked, folded.applied) == ([], [True])
    assert folded.profiles["a"][0].recent_items == ["missing"]
