"""The worker's product cache: hits within the TTL, bounded by size, and the store asked only for the rest."""

from __future__ import annotations

import asyncio

import numpy as np

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.store import MemoryStore, ProductRow
from streams.events import Click
from streams.product_cache import ProductCache
from streams.profiles import UserProfile
from streams.updater import BehaviorUpdater

NOW_MS = 1_767_225_600_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(product_id: str, category: str = "shoes") -> ProductRow:
    return ProductRow(product_id, np.ones(4, dtype=np.float32), product_id, category, "b", 1.0, True, NOW_MS, "m")


def test_a_product_is_served_from_the_cache_until_its_ttl_passes() -> None:
    clock = Clock()
    cache = ProductCache(10, ttl_s=30.0, clock=clock)
    cache.put_many([row("p1")])
    found, missing = cache.get_many(["p1", "p2"])
    assert (list(found), found["p1"].category, missing) == (["p1"], "shoes", ["p2"])
    clock.now = 30.0
    assert cache.get_many(["p1"])[1] == []
    clock.now = 30.5
    assert cache.get_many(["p1"])[1] == ["p1"]


def test_the_least_recently_used_products_leave_beyond_the_size() -> None:
    cache = ProductCache(2, ttl_s=60.0, clock=Clock())
    cache.put_many([row("p1"), row("p2")])
    cache.get_many(["p1"])  # p2 is now the least recently used
    cache.put_many({"p3": row("p3")})
    assert len(cache) == 2
    assert cache.get_many(["p1", "p2", "p3"])[1] == ["p2"]


def test_a_discarded_or_disabled_cache_holds_nothing() -> None:
    cache = ProductCache(5, ttl_s=60.0, clock=Clock())
    cache.put_many([row("p1"), row("p2")])
    cache.discard(["p1", "absent"])
    assert cache.get_many(["p1", "p2"])[1] == ["p1"]
    disabled = ProductCache(0, ttl_s=60.0)
    disabled.put_many([row("p1")])
    assert len(disabled) == 0


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def get_products(self, product_ids: list[str]) -> dict[str, ProductRow]:  # type: ignore[override]
        self.asked.append(sorted(product_ids))
        return super().get_products(product_ids)


def click(event_id: str, product_id: str) -> Click:
    return Click(event_id=event_id, ts=NOW_MS, schema_version=1, user_id="u1", product_id=product_id)


def test_the_updater_asks_the_store_only_for_products_it_has_not_cached() -> None:
    store = CountingStore()
    encoder = HashingTextEncoder(4)
    store.upsert_products([row("p1"), row("p2")])
    updater = BehaviorUpdater(store, AsyncEncoder(encoder), products=ProductCache(100, 60.0))
    profiles: dict[str, UserProfile] = {}

    def load(user_id: str) -> UserProfile:
        return profiles.get(user_id) or UserProfile(user_id, 1e9)

    first = asyncio.run(updater.fold([click("1", "p1"), click("2", "unknown")], load))
    second = asyncio.run(updater.fold([click("3", "p1"), click("4", "p2"), click("5", "unknown")], load))
    assert store.asked == [["p1", "unknown"], ["p2", "unknown"]]  # the unknown one is asked for every time
    assert first.parked == [1]
    assert second.parked == [2]
    assert second.applied == [True, True, False]
