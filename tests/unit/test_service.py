"""Search, recommendations and similar items on the memory store with the hashing encoder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.service import RankedItem, Recommender, Results, interleave_categories, user_vector
from ranker.settings import RankerSettings
from ranker.store import ItemRow, MemoryStore, ProductRow, UserRow, Vector

DIM = 64


@pytest.fixture
def store(catalog_rows: list[ProductRow]) -> MemoryStore:
    """A memory store holding the shared catalog."""
    store = MemoryStore()
    store.upsert_products(catalog_rows)
    return store


@pytest.fixture
def recommender(store: MemoryStore, encoder: HashingTextEncoder) -> Iterator[Recommender]:
    """A recommender over the catalog with default settings."""
    async_encoder = AsyncEncoder(encoder)
    yield Recommender(store, async_encoder, RankerSettings())
    async_encoder.close()


def user(user_id: str, vector: Vector | None = None, **features: Any) -> UserRow:
    """A served user row; no vector means zero vectors (no signal yet)."""
    zero = np.zeros(DIM, dtype=np.float32)
    chosen = zero if vector is None else vector
    return UserRow(user_id, chosen, chosen, features, updated_at=0)


def ids(results: Results) -> list[str]:
    """Product ids of the results, in rank order."""
    return [item.product.product_id for item in results.items]


def test_search_ranks_the_product_sharing_the_query_words_first(recommender: Recommender) -> None:
    """The product whose title shares the most words with the query ranks first for an anonymous shopper."""
    results = asyncio.run(recommender.search("red shoes", None, 5))
    assert ids(results)[0] == "shoe-red"
    assert (results.strategy, results.personalized) == ("semantic", False)
    assert [item.score for item in results.items] == sorted((item.score for item in results.items), reverse=True)


def test_search_leaves_out_sold_out_products(recommender: Recommender) -> None:
    """Search only returns products in stock."""
    results = asyncio.run(recommender.search("green running shoes", None, 10))
    assert "shoe-sold-out" not in ids(results)
    assert {"shoe-red", "shoe-blue", "shoe-trail"} <= set(ids(results))


def test_search_boosts_the_shoppers_favourite_category(recommender: Recommender, store: MemoryStore) -> None:
    """A shopper with bag affinity sees the leather bag above the better-matching leather belt."""
    store.upsert_users([user("u-bags", categories={"bags": 1.0})])
    anonymous = asyncio.run(recommender.search("leather", None, 3))
    personal = asyncio.run(recommender.search("leather", "u-bags", 3))
    assert ids(anonymous)[:2] == ["belt", "bag"]
    assert ids(personal)[:2] == ["bag", "belt"]
    assert personal.personalized is True
    top = personal.items[0]
    assert top.contributions["category_affinity"] == pytest.approx(RankerSettings().affinity_weight)
    assert top.score == pytest.approx(sum(top.contributions.values()))


def test_search_for_unknown_user_is_not_personalized(recommender: Recommender) -> None:
    """An unknown user id searches like an anonymous shopper."""
    unknown = asyncio.run(recommender.search("leather", "u-new", 3))
    anonymous = asyncio.run(recommender.search("leather", None, 3))
    assert unknown.personalized is False
    assert [item.to_json() for item in unknown.items] == [item.to_json() for item in anonymous.items]


def test_search_returns_at_most_k_items(recommender: Recommender) -> None:
    """Search never returns more than k items."""
    assert len(asyncio.run(recommender.search("running shoes", None, 2)).items) == 2


def test_recommend_for_unknown_user_shows_the_range_of_the_catalog(recommender: Recommender) -> None:
    """A cold-start shopper gets popular items interleaved across categories, not personalized."""
    results = asyncio.run(recommender.recommend("u-new", 8))
    assert (results.strategy, results.personalized) == ("popular", False)
    categories = [item.product.category for item in results.items]
    assert len(categories) == 8
    assert len(set(categories[:4])) == 4
    assert "shoe-sold-out" not in ids(results)


def test_recommend_for_user_with_vector_is_personalized(
    recommender: Recommender, store: MemoryStore, embed: Callable[[str], Vector]
) -> None:
    """A shopper with a vector gets similar items, minus purchased and sold-out ones."""
    store.upsert_users([user("u-runner", embed("running shoes"), purchased=["shoe-red"], categories={"shoes": 1.0})])
    results = asyncio.run(recommender.recommend("u-runner", 5))
    assert (results.strategy, results.personalized) == ("personalized", True)
    assert set(ids(results)[:2]) == {"shoe-blue", "shoe-trail"}
    assert not {"shoe-red", "shoe-sold-out"} & set(ids(results))


def test_recommend_for_user_with_affinity_but_no_vector_gets_their_top_category(
    recommender: Recommender, store: MemoryStore
) -> None:
    """A shopper with category affinity but zero vectors gets products of their favourite category, minus purchases."""
    store.upsert_users([user("u-bags", categories={"bags": 1.0, "shoes": 0.2}, purchased=["bag"])])
    results = asyncio.run(recommender.recommend("u-bags", 5))
    assert (results.strategy, results.personalized) == ("personalized", True)
    assert ids(results) == ["backpack"]
    assert results.items[0].sources == ("category",)


def test_similar_excludes_the_product_itself(recommender: Recommender) -> None:
    """Similar items of a product are the closest other in-stock products."""
    results = asyncio.run(recommender.similar("shoe-red", 3))
    assert results is not None
    assert (results.strategy, results.personalized) == ("similar", False)
    assert "shoe-red" not in ids(results)
    assert set(ids(results)[:2]) == {"shoe-blue", "shoe-trail"}


def test_similar_of_unknown_product_is_none(recommender: Recommender) -> None:
    """An unknown product has no similar items: None, not an empty list."""
    assert asyncio.run(recommender.similar("no-such-product", 3)) is None


def test_user_vector_blends_short_and_long_term() -> None:
    """The user vector is the normalised weighted blend of both vectors, or None when both are zero."""
    short = np.array([1.0, 0.0], dtype=np.float32)
    long = np.array([0.0, 1.0], dtype=np.float32)
    blended = user_vector(UserRow("u", short, long, {}, 0), short_weight=0.75)
    assert blended is not None
    np.testing.assert_allclose(blended, np.array([0.75, 0.25]) / np.hypot(0.75, 0.25), rtol=1e-6)
    zero = np.zeros(2, dtype=np.float32)
    assert user_vector(UserRow("u", zero, zero, {}, 0), short_weight=0.75) is None


def test_interleave_categories_round_robins_newest_first(catalog_rows: list[ProductRow]) -> None:
    """Interleaving takes the newest product of each category in turn, then the next of each."""
    mixed = interleave_categories(catalog_rows, 20)
    assert len(mixed) == len(catalog_rows)
    assert [row.product_id for row in mixed[:5]] == ["hat", "backpack", "wallet", "shoe-sold-out", "jeans"]
    assert interleave_categories(catalog_rows, 2) == mixed[:2]
    assert interleave_categories([], 5) == []


def test_ranked_item_to_json_rounds_for_the_api(make_product: Callable[..., ProductRow]) -> None:
    """The API view of a result has the product fields, rounded price and score; explain adds contributions, sources."""
    item = RankedItem(
        make_product("p1", price=19.989999771), 0.123456789, {"similarity": 0.123456789}, sources=("content", "covisit")
    )
    assert item.to_json() == {
        "product_id": "p1",
        "title": "product p1",
        "category": "misc",
        "brand": "acme",
        "price": 19.99,
        "score": 0.123457,
    }
    assert item.to_json(explain=True) == {
        **item.to_json(),
        "contributions": {"similarity": 0.123457},
        "sources": ["content", "covisit"],
    }


def test_search_ranks_by_relevance_before_the_recommendation_blends_popularity(
    recommender: Recommender, store: MemoryStore
) -> None:
    """A popular product matching the query less stays below the best match: search weighs popularity lightly."""
    now_ms = 1_767_225_600_000
    store.upsert_items([ItemRow("belt", 20.0, {}, now_ms)])  # very popular, the lesser "red shoes" match
    results = asyncio.run(recommender.search("red shoes", None, 5))
    assert ids(results)[0] == "shoe-red"
    popular = next(item for item in results.items if item.product.product_id == "belt")
    assert popular.contributions["popularity"] == pytest.approx(
        RankerSettings().search_popularity_weight * np.log1p(20.0), rel=0.05
    )
