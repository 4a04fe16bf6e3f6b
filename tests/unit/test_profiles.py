"""Shopper profiles: how each behavior event changes them, idempotence and serialisation."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.store import Vector
from streams.events import Click, Purchase, Search, UserEvent
from streams.profiles import (
    DEDUP_TTL_MS,
    RECENT_ITEMS,
    SEEN_EVENTS,
    ProductInfo,
    UserProfile,
    decode_vector,
    encode_vector,
    event_key,
)

DIM = 8
HALF_LIFE_MS = 7 * 24 * 3600 * 1000.0
TS_MS = 1_767_225_600_000


def unit(*components: float) -> Vector:
    """A unit vector of dimension DIM starting with ``components``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return (vector / np.linalg.norm(vector)).astype(np.float32)


SHOES = ProductInfo(unit(1.0), "shoes", "swift", 80.0)
BAGS = ProductInfo(unit(0.0, 1.0), "bags", "nomad", 120.0)
NO_BRAND = ProductInfo(unit(0.0, 0.0, 1.0), "hats", "", 15.0)


def click(event_id: str, product_id: str = "p-shoes", ts: int = TS_MS) -> Click:
    """A click event."""
    return Click(event_id=event_id, ts=ts, schema_version=1, user_id="u1", product_id=product_id)


def purchase(event_id: str, product_id: str = "p-shoes", ts: int = TS_MS) -> Purchase:
    """A purchase event."""
    return Purchase(event_id=event_id, ts=ts, schema_version=1, user_id="u1", product_id=product_id)


def search(event_id: str, query: str = "running shoes", ts: int = TS_MS) -> Search:
    """A search event."""
    return Search(event_id=event_id, ts=ts, schema_version=1, user_id="u1", query=query)


def profile() -> UserProfile:
    """An empty profile."""
    return UserProfile("u1", HALF_LIFE_MS)


def cosine(a: Vector | None, b: Vector) -> float:
    """Cosine similarity, 0 for a missing vector."""
    return 0.0 if a is None else float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_first_click_sets_vectors_and_affinities() -> None:
    """A first click on a known product takes its vector and gives its category and brand affinity."""
    user = profile()
    assert user.apply(click("e1"), SHOES, None) is True
    np.testing.assert_array_equal(user.short_vector, SHOES.vector)
    np.testing.assert_array_equal(user.long_vector, SHOES.vector)
    assert user.categories.get("shoes") == pytest.approx(1.0)
    assert user.brands.get("swift") == pytest.approx(1.0)
    assert user.recent_items == ["p-shoes"]
    assert user.purchased == []
    assert (user.events, user.last_event_ms) == (1, TS_MS)


def test_click_moves_vectors_towards_the_product_and_raises_its_category() -> None:
    """A click on another product pulls both vectors towards it, the short one faster, and lifts its category."""
    user = profile()
    user.apply(click("e1"), SHOES, None)
    before = cosine(user.short_vector, BAGS.vector)
    user.apply(click("e2", "p-bags", TS_MS + 1), BAGS, None)
    assert cosine(user.short_vector, BAGS.vector) > cosine(user.long_vector, BAGS.vector) > before
    assert np.linalg.norm(user.short_vector) == pytest.approx(1.0)
    assert user.categories.get("bags") > 0
    assert user.categories.normalized() == pytest.approx({"shoes": 1.0, "bags": 1.0}, rel=1e-6)


def test_purchase_weighs_more_than_click_and_is_recorded() -> None:
    """A purchase moves the vector and affinity further than a click, and lands in ``purchased``."""
    clicker, buyer = profile(), profile()
    for user in (clicker, buyer):
        user.apply(click("e1"), SHOES, None)
    clicker.apply(click("e2", "p-bags"), BAGS, None)
    buyer.apply(purchase("e2", "p-bags"), BAGS, None)
    assert cosine(buyer.short_vector, BAGS.vector) > cosine(clicker.short_vector, BAGS.vector)
    assert buyer.categories.get("bags") == pytest.approx(3 * clicker.categories.get("bags"))
    assert buyer.purchased == ["p-bags"]
    assert clicker.purchased == []
    assert buyer.recent_items == clicker.recent_items == ["p-shoes", "p-bags"]


def test_search_with_query_vector_moves_the_vector_and_records_the_query() -> None:
    """A search with an embedded query pulls the vector towards it without touching affinities."""
    user = profile()
    user.apply(click("e1"), SHOES, None)
    before = cosine(user.short_vector, BAGS.vector)
    assert user.apply(search("e2", "travel bag"), None, BAGS.vector) is True
    assert cosine(user.short_vector, BAGS.vector) > before
    assert user.recent_queries == ["travel bag"]
    assert set(dict(user.categories.items())) == {"shoes"}


def test_search_without_query_vector_records_only_the_query() -> None:
    """A search whose query could not be embedded still counts and is remembered, with no vector."""
    user = profile()
    assert user.apply(search("e1"), None, None) is True
    assert (user.short_vector, user.long_vector) == (None, None)
    assert user.recent_queries == ["running shoes"]
    assert user.events == 1


@pytest.mark.parametrize("make_event", [click, purchase], ids=["click", "purchase"])
def test_duplicate_event_returns_false_and_changes_nothing(make_event: Callable[..., Click | Purchase]) -> None:
    """Re-applying an already applied event_id is refused and leaves the profile untouched."""
    user = profile()
    user.apply(make_event("e1"), SHOES, None)
    before = user.to_dict()
    assert user.apply(make_event("e1", "p-bags", TS_MS + 10), BAGS, None) is False
    assert user.to_dict() == before


@pytest.mark.parametrize("make_event", [click, purchase], ids=["click", "purchase"])
def test_unknown_product_records_the_item_but_learns_no_vector(make_event: Callable[..., Click | Purchase]) -> None:
    """With no product info the item is remembered but no vector or affinity is learned."""
    user = profile()
    assert user.apply(make_event("e1", "p-unknown"), None, None) is True
    assert user.recent_items == ["p-unknown"]
    assert (user.short_vector, user.long_vector) == (None, None)
    assert dict(user.categories.items()) == {}
    assert user.purchased == (["p-unknown"] if make_event is purchase else [])


def test_product_without_brand_gives_no_brand_affinity() -> None:
    """An empty brand is not learned as a brand."""
    user = profile()
    user.apply(click("e1", "p-hat"), NO_BRAND, None)
    assert dict(user.brands.items()) == {}
    assert user.categories.get("hats") > 0


def test_last_event_ms_never_moves_back_for_late_events() -> None:
    """A late event is applied but the profile's last event time stays at the newest seen."""
    user = profile()
    user.apply(click("e1", ts=TS_MS), SHOES, None)
    user.apply(click("e2", ts=TS_MS - 60_000), BAGS, None)
    assert user.last_event_ms == TS_MS
    assert user.events == 2


def busy_profile() -> UserProfile:
    """A profile that has seen every kind of event, including one unknown product."""
    user = profile()
    user.apply(click("e1", ts=TS_MS), SHOES, None)
    user.apply(purchase("e2", "p-bags", ts=TS_MS + 3_600_000), BAGS, None)
    user.apply(search("e3", ts=TS_MS + 7_200_000), None, unit(1.0, 1.0))
    user.apply(click("e4", "p-unknown", ts=TS_MS + 10_000_000), None, None)
    user.apply(click("e5", "p-hat", ts=TS_MS + 86_400_000), NO_BRAND, None)
    return user


def test_to_dict_from_dict_round_trip_through_json_preserves_everything() -> None:
    """A profile saved with to_dict, sent through JSON and restored equals the original."""
    user = busy_profile()
    restored = UserProfile.from_dict(json.loads(json.dumps(user.to_dict())), HALF_LIFE_MS)
    np.testing.assert_array_equal(restored.short_vector, user.short_vector)
    np.testing.assert_array_equal(restored.long_vector, user.long_vector)
    assert dict(restored.categories.items()) == dict(user.categories.items())
    assert dict(restored.brands.items()) == dict(user.brands.items())
    assert (restored.categories.ref_ms, restored.brands.ref_ms) == (user.categories.ref_ms, user.brands.ref_ms)
    assert restored.to_dict() == user.to_dict()
    assert restored.apply(click("e1"), SHOES, None) is False


def test_restored_profile_evolves_like_the_original() -> None:
    """After a round trip, the same new event leaves both profiles in the same state."""
    user = busy_profile()
    restored = UserProfile.from_dict(json.loads(json.dumps(user.to_dict())), HALF_LIFE_MS)
    for each in (user, restored):
        each.apply(purchase("e9", ts=TS_MS + 90_000_000), SHOES, None)
    assert restored.to_dict() == user.to_dict()


def test_from_dict_of_empty_profile_has_no_vectors() -> None:
    """A profile without vectors round-trips with None vectors, not empty arrays."""
    restored = UserProfile.from_dict(json.loads(json.dumps(profile().to_dict())), HALF_LIFE_MS)
    assert (restored.short_vector, restored.long_vector) == (None, None)
    assert restored.to_dict() == profile().to_dict()


@pytest.mark.parametrize("vector", [None, unit(1.0, 2.0, 3.0)], ids=["none", "unit"])
def test_vector_encoding_round_trips(vector: Vector | None) -> None:
    """decode_vector(encode_vector(v)) gives back v exactly, and None stays None."""
    restored = decode_vector(encode_vector(vector))
    if vector is None:
        assert restored is None
    else:
        assert restored is not None
        assert restored.dtype == np.float32
        np.testing.assert_array_equal(restored, vector)


def test_to_row_gives_zero_vectors_without_signal() -> None:
    """A profile with no embedded signal serves zero vectors of the store's dimension."""
    user = profile()
    user.apply(click("e1", "p-unknown"), None, None)
    row = user.to_row(DIM)
    assert row.user_id == "u1"
    for vector in (row.short_vector, row.long_vector):
        assert vector.shape == (DIM,)
        assert not vector.any()
    assert row.features["recent_items"] == ["p-unknown"]
    assert row.updated_at == TS_MS


def test_to_row_features_hold_affinities_and_purchases() -> None:
    """The served row carries normalised category and brand affinities, purchases and the vectors."""
    user = busy_profile()
    row = user.to_row(DIM)
    np.testing.assert_array_equal(row.short_vector, user.short_vector)
    assert max(row.features["categories"].values()) == pytest.approx(1.0)
    assert set(row.features["categories"]) == {"shoes", "bags", "hats"}
    assert max(row.features["categories"], key=row.features["categories"].get) == "bags"
    assert set(row.features["brands"]) == {"swift", "nomad"}
    assert row.features["purchased"] == ["p-bags"]
    assert row.features["events"] == 5
    assert row.updated_at == TS_MS + 86_400_000
    json.dumps(row.features)  # stored as a JSON column


def test_seen_events_are_bounded() -> None:
    """Only the last SEEN_EVENTS event ids are remembered."""
    user = profile()
    for i in range(SEEN_EVENTS + 10):
        user.apply(search(f"e{i}"), None, None)
    assert len(user.seen_events) == SEEN_EVENTS
    assert list(user.seen_events)[-1] == event_key(f"e{SEEN_EVENTS + 9}")
    assert not user.has_seen("e0")
    assert user.has_seen("e10")


def test_a_replay_within_the_ttl_changes_nothing_and_ids_past_it_are_forgotten() -> None:
    """An event re-delivered hours later is still a duplicate; a day of event time later its id is gone."""
    user = profile()
    assert user.apply(click("first"), SHOES, None)
    for hour in range(1, 24):
        user.apply(search(f"s{hour}", ts=TS_MS + hour * 3_600_000), None, None)
    assert not user.apply(click("first"), SHOES, None)
    assert user.events == 24
    user.apply(search("next-day", ts=TS_MS + DEDUP_TTL_MS + 1), None, None)
    assert not user.has_seen("first")
    assert user.has_seen("s1")


def test_a_shorter_ttl_is_honoured_and_survives_a_round_trip() -> None:
    """The TTL comes from the caller (STREAMREC_DEDUP_TTL_S), also for profiles loaded from the table."""
    user = UserProfile("u1", HALF_LIFE_MS, dedup_ttl_ms=60_000)
    user.apply(click("a"), SHOES, None)
    loaded = UserProfile.from_dict(json.loads(json.dumps(user.to_dict())), HALF_LIFE_MS, 60_000)
    assert loaded.seen_events == {event_key("a"): TS_MS}
    loaded.apply(click("b", ts=TS_MS + 60_001), SHOES, None)
    assert list(loaded.seen_events) == [event_key("b")]


def test_a_profile_saved_with_a_list_of_ids_loads_them_at_its_last_event_time() -> None:
    """Profiles written before ids carried times keep deduplicating after an upgrade."""
    data = {"user_id": "u1", "seen_events": ["a", "b"], "last_event_ms": TS_MS, "events": 2}
    user = UserProfile.from_dict(data, HALF_LIFE_MS)
    assert user.seen_events == {event_key("a"): TS_MS, event_key("b"): TS_MS}
    assert not user.apply(click("a"), SHOES, None)


def test_a_profile_saved_with_ids_and_times_keeps_deduplicating_and_their_order() -> None:
    """The format before keys: a JSON object of event id to event time, oldest first."""
    data = {"user_id": "u1", "seen_events": {"a": TS_MS, "b": TS_MS + 1}, "last_event_ms": TS_MS + 1, "events": 2}
    user = UserProfile.from_dict(data, HALF_LIFE_MS)
    assert list(user.seen_events.values()) == [TS_MS, TS_MS + 1]
    assert not user.apply(click("b"), SHOES, None)
    assert user.apply(click("c", ts=TS_MS + 2), SHOES, None)


def test_a_busy_shopper_s_saved_state_stays_small() -> None:
    """512 remembered events cost 16 bytes each before base64, not an id and a time in JSON."""
    user = profile()
    for i in range(SEEN_EVENTS):
        user.apply(click(f"event-{i:08d}-0123456789abcdef", f"p{i % 50}", ts=TS_MS + i), SHOES, None)
    assert len(json.dumps(user.to_dict())) < 16_000


def test_recent_items_are_bounded_and_deduplicated() -> None:
    """recent_items keeps each product once, most recent last, at most RECENT_ITEMS of them."""
    user = profile()
    for i in range(RECENT_ITEMS + 5):
        user.apply(click(f"e{i}", f"p{i}"), None, None)
    user.apply(click("again", "p10"), None, None)
    assert len(user.recent_items) == RECENT_ITEMS
    assert user.recent_items[-1] == "p10"
    assert user.recent_items.count("p10") == 1


def test_repeat_purchase_is_recorded_once() -> None:
    """Buying the same product twice keeps one entry in purchased."""
    user = profile()
    user.apply(purchase("e1"), SHOES, None)
    user.apply(purchase("e2"), SHOES, None)
    assert user.purchased == ["p-shoes"]


PRODUCTS = {"p-shoes": SHOES, "p-bags": BAGS, "p-hat": NO_BRAND, "p-unknown": None}
EVENT_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["click", "purchase", "search"]), st.sampled_from(sorted(PRODUCTS)), st.integers(0, 10**9)
    ),
    max_size=15,
)


def make_events(steps: list[tuple[str, str, int]]) -> list[tuple[UserEvent, ProductInfo | None, Vector | None]]:
    """Events with distinct ids and the product info and query vector the agent would look up."""
    events: list[tuple[UserEvent, ProductInfo | None, Vector | None]] = []
    for i, (kind, product_id, offset) in enumerate(steps):
        info = PRODUCTS[product_id]
        if kind == "search":
            events.append((search(f"e{i}", ts=TS_MS + offset), None, info.vector if info else None))
        else:
            make = click if kind == "click" else purchase
            events.append((make(f"e{i}", product_id, TS_MS + offset), info, None))
    return events


@given(steps=EVENT_STEPS)
def test_replaying_events_has_no_visible_effect(steps: list[tuple[str, str, int]]) -> None:
    """Replaying an applied stream (at-least-once delivery) within the dedup TTL leaves the profile unchanged."""
    user = profile()
    events = make_events([(kind, product_id, offset % DEDUP_TTL_MS) for kind, product_id, offset in steps])
    for event, info, query_vector in events:
        assert user.apply(event, info, query_vector) is True
    before = user.to_dict()
    for event, info, query_vector in events:
        assert user.apply(event, info, query_vector) is False
    assert user.to_dict() == before


def test_a_saved_state_does_not_change_with_the_profile_after_it() -> None:
    """A table kept in memory holds the dict itself; the next events must not reach into it."""
    user = profile()
    user.apply(purchase("e1"), SHOES, None)
    user.apply(search("e2"), None, unit(1.0))
    saved = json.dumps(state := user.to_dict())
    user.apply(purchase("e3", "p-bags"), BAGS, None)
    user.apply(search("e4", "bags"), None, unit(0.0, 1.0))
    assert json.dumps(state) == saved
