"""Tests for the deterministic sample catalog and shopper event generator."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter

import pytest

from streamrec.sample_data import (
    BASE_TS_MS,
    CATEGORIES,
    EVENTS_START_MS,
    QUERIES,
    background_traffic,
    catalog,
    shopper_events,
)

PRODUCT_KEYS = {
    "event_id",
    "ts",
    "schema_version",
    "op",
    "product_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "in_stock",
}
EVENT_KEYS = {
    "search": {"event_id", "ts", "schema_version", "user_id", "query"},
    "click": {"event_id", "ts", "schema_version", "user_id", "product_id", "position"},
    "purchase": {"event_id", "ts", "schema_version", "user_id", "product_id", "quantity", "price"},
}
SHOE_WORDS = re.compile(r"\b(shoes?|sneakers?|trainers?|runners?|racing flats?)\b", re.IGNORECASE)
RUNNING_WORDS = ("shoe", "running", "run")


@pytest.fixture(scope="module")
def products() -> list[dict[str, object]]:
    """The default 400-product catalog."""
    return catalog()


def by_id(products: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    """Index products by product_id."""
    return {p["product_id"]: p for p in products}


def test_catalog_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same catalog; another seed gives a different one."""
    assert catalog(120, seed=3) == catalog(120, seed=3)
    assert catalog(120, seed=3) != catalog(120, seed=4)
    assert catalog(50, seed=3) == catalog(120, seed=3)[:50]


def test_catalog_has_n_products_with_unique_ids_and_titles(products: list[dict[str, object]]) -> None:
    """n products with unique ids, event ids and titles, spread evenly over every category."""
    assert len(products) == 400
    assert [p["product_id"] for p in products] == [f"p{i:05d}" for i in range(1, 401)]
    assert len({p["event_id"] for p in products}) == 400
    assert len({p["title"] for p in products}) == 400
    counts = Counter(p["category"] for p in products)
    assert set(counts) == set(CATEGORIES)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert catalog(0) == []


def test_catalog_titles_stay_unique_at_benchmark_scale() -> None:
    """Titles stay unique for a large catalog."""
    big = catalog(5000, seed=1)
    assert len({p["title"] for p in big}) == 5000


def test_catalog_fields_have_right_types_and_values(products: list[dict[str, object]]) -> None:
    """Every product has exactly the documented fields with valid types and values."""
    assert len(CATEGORIES) >= 10
    assert len(set(CATEGORIES)) == len(CATEGORIES)
    for p in products:
        assert set(p) == PRODUCT_KEYS
        assert isinstance(p["event_id"], str)
        assert p["event_id"]
        assert type(p["ts"]) is int
        assert abs(p["ts"] - BASE_TS_MS) < 30 * 86_400_000
        assert type(p["schema_version"]) is int
        assert p["schema_version"] == 1
        assert p["op"] == "upsert"
        assert isinstance(p["title"], str)
        assert len(p["title"]) > 10
        assert isinstance(p["description"], str)
        assert p["description"].endswith(".")
        assert p["category"] in CATEGORIES
        assert isinstance(p["brand"], str)
        assert p["brand"]
        assert type(p["price"]) is float
        assert p["price"] > 0
        assert round(p["price"], 2) == p["price"]
        assert type(p["in_stock"]) is bool
    in_stock = sum(1 for p in products if p["in_stock"]) / len(products)
    assert 0.85 <= in_stock <= 0.98
    assert json.loads(json.dumps(products)) == products
    brands = {c: {p["brand"] for p in products if p["category"] == c} for c in CATEGORIES}
    assert all(len(b) >= 3 for b in brands.values())


@pytest.mark.parametrize("seed", [7, 1, 42, 2026])
def test_running_shoe_titles_use_shoe_words(seed: int) -> None:
    """Running-shoe titles describe shoes in words; no other title or description mentions shoes or running."""
    for p in catalog(650, seed=seed):
        title, description = str(p["title"]), str(p["description"])
        if p["category"] == "running-shoes":
            assert SHOE_WORDS.search(title), title
        else:
            for word in RUNNING_WORDS:
                assert word not in title.lower(), title
                assert word not in description.lower(), description


def test_queries_cover_every_category() -> None:
    """QUERIES gives a natural multi-word search phrase for every category."""
    assert set(QUERIES) == set(CATEGORIES)
    assert all(len(q.split()) >= 2 for q in QUERIES.values())
    assert "running" in QUERIES["running-shoes"]


def test_shopper_events_focus_on_the_category(products: list[dict[str, object]]) -> None:
    """A search for the category's query, then distinct in-stock clicks in that category, then one purchase."""
    events = shopper_events(products, "u-alice", "headphones", n_clicks=6, start_ms=1_800_000_000_000)
    assert [k for k, _ in events] == ["search"] + ["click"] * 6 + ["purchase"]
    catalog_by_id = by_id(products)
    for kind, event in events:
        assert set(event) == EVENT_KEYS[kind]
        assert event["user_id"] == "u-alice"
        assert event["schema_version"] == 1
    assert events[0][1]["query"] == QUERIES["headphones"]
    clicks = [e for k, e in events if k == "click"]
    clicked = [e["product_id"] for e in clicks]
    assert len(set(clicked)) == 6
    for click in clicks:
        product = catalog_by_id[click["product_id"]]
        assert product["category"] == "headphones"
        assert product["in_stock"] is True
        assert type(click["position"]) is int
        assert click["position"] >= 1
    purchase = events[-1][1]
    assert purchase["product_id"] in clicked
    assert purchase["quantity"] == 1
    assert purchase["price"] == catalog_by_id[purchase["product_id"]]["price"]


@pytest.mark.parametrize("category", CATEGORIES)
def test_shopper_events_timestamps_and_ids(products: list[dict[str, object]], category: str) -> None:
    """Timestamps start at start_ms and strictly increase; event ids are unique and deterministic."""
    events = shopper_events(products, "u0042", category, n_clicks=4)
    ts = [int(str(e["ts"])) for _, e in events]
    assert ts[0] == EVENTS_START_MS
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert len({e["event_id"] for _, e in events}) == len(events)
    assert events == shopper_events(products, "u0042", category, n_clicks=4)
    other = shopper_events(products, "u0043", category, n_clicks=4)
    assert not {e["event_id"] for _, e in events} & {e["event_id"] for _, e in other}


def test_shopper_events_without_purchase_and_errors(products: list[dict[str, object]]) -> None:
    """purchase=False gives no purchase; impossible requests raise ValueError."""
    events = shopper_events(products, "u7", "coffee", n_clicks=3, purchase=False)
    assert [k for k, _ in events] == ["search", "click", "click", "click"]
    with pytest.raises(ValueError, match="unknown category"):
        shopper_events(products, "u7", "no-such-category")
    with pytest.raises(ValueError, match="in-stock coffee products"):
        shopper_events(products, "u7", "coffee", n_clicks=1000)
    with pytest.raises(ValueError, match="purchase needs at least one click"):
        shopper_events(products, "u7", "coffee", n_clicks=0, purchase=True)


def test_background_traffic_is_deterministic_and_covers_users(products: list[dict[str, object]]) -> None:
    """Background traffic is deterministic, covers n_users users and is interleaved by ts."""
    traffic = background_traffic(products, n_users=50, events_per_user=8)
    assert traffic == background_traffic(products, n_users=50, events_per_user=8)
    assert traffic != background_traffic(products, n_users=50, events_per_user=8, seed=14)
    per_user = Counter(str(e["user_id"]) for _, e in traffic)
    assert sorted(per_user) == [f"u{i:04d}" for i in range(1, 51)]
    assert set(per_user.values()) == {8}
    ts = [int(str(e["ts"])) for _, e in traffic]
    assert ts == sorted(ts)
    assert len({e["event_id"] for _, e in traffic}) == len(traffic)
    catalog_by_id = by_id(products)
    kinds = Counter(k for k, _ in traffic)
    assert kinds["search"] >= 50
    assert kinds["click"] > kinds["search"]
    assert kinds["purchase"] > 0
    for kind, event in traffic:
        assert set(event) == EVENT_KEYS[kind]
        if kind != "search":
            assert catalog_by_id[event["product_id"]]["in_stock"] is True
    categories_per_user: dict[str, set[object]] = {}
    for kind, event in traffic:
        if kind == "click":
            product = catalog_by_id[event["product_id"]]
            categories_per_user.setdefault(str(event["user_id"]), set()).add(product["category"])
    assert all(1 <= len(c) <= 2 for c in categories_per_user.values())
    assert any(len(c) == 2 for c in categories_per_user.values())
