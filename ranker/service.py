"""Search, recommendations and similar items: retrieval plus re-ranking.

Blocking store calls run in worker threads, so the event loop keeps
answering while Milvus works.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from encoders.runner import Embedder
from ranker.scoring import Weights, score_hit
from ranker.settings import RankerSettings
from ranker.store import Hit, ProductFilter, ProductRow, UserRow, Vector, VectorStore

Strategy = Literal["personalized", "affinity", "popular", "semantic", "similar"]


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One result with its score and the contributions behind it."""

    product: ProductRow
    score: float
    contributions: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """The item as the API returns it."""
        p = self.product
        return {
            "product_id": p.product_id,
            "title": p.title,
            "category": p.category,
            "brand": p.brand,
            "price": round(p.price, 2),
            "score": round(self.score, 6),
            "contributions": {name: round(value, 6) for name, value in self.contributions.items()},
        }


@dataclass(frozen=True, slots=True)
class Results:
    """Ranked items and how they were chosen."""

    items: list[RankedItem]
    strategy: Strategy
    personalized: bool
    extra: dict[str, Any] = field(default_factory=dict)


def user_vector(user: UserRow, short_weight: float) -> Vector | None:
    """Blend of the short- and long-term vectors, or None when there is no signal."""
    blended = short_weight * user.short_vector + (1.0 - short_weight) * user.long_vector
    norm = float(np.linalg.norm(blended))
    return (blended / norm).astype(np.float32) if norm > 1e-6 else None


def interleave_categories(rows: Sequence[ProductRow], k: int) -> list[ProductRow]:
    """Round-robin over categories so non-personalized lists show the range."""
    by_category: dict[str, list[ProductRow]] = {}
    for row in sorted(rows, key=lambda r: (-r.updated_at, r.product_id)):
        by_category.setdefault(row.category, []).append(row)
    mixed = itertools.chain.from_iterable(itertools.zip_longest(*by_category.values()))
    return [row for row in mixed if row is not None][:k]


class Recommender:
    """Answers search, recommendation and similar-item requests."""

    def __init__(self, store: VectorStore, encoder: Embedder, settings: RankerSettings) -> None:
        self._store = store
        self._encoder = encoder
        self._settings = settings
        self._weights = Weights(settings.affinity_weight, settings.brand_weight)

    async def _user(self, user_id: str | None) -> UserRow | None:
        return await asyncio.to_thread(self._store.get_user, user_id) if user_id else None

    def _rank(self, hits: Sequence[Hit], features: dict[str, Any], k: int) -> list[RankedItem]:
        items = []
        for hit in hits:
            scored = score_hit(hit.similarity, hit.product.category, hit.product.brand, features, self._weights)
            items.append(RankedItem(hit.product, scored.score, scored.contributions))
        items.sort(key=lambda item: (-item.score, item.product.product_id))
        return items[:k]

    async def search(self, query: str, user_id: str | None, k: int) -> Results:
        """Products matching the query's meaning, re-ranked by the shopper's profile."""
        user_task = asyncio.create_task(self._user(user_id))
        vectors = await self._encoder.encode([query], caller="api")
        user = await user_task
        hits = await asyncio.to_thread(
            self._store.search_products, vectors[0], k * self._settings.candidate_factor, ProductFilter()
        )
        features = user.features if user else {}
        return Results(self._rank(hits, features, k), "semantic", personalized=bool(features))

    async def recommend(self, user_id: str, k: int) -> Results:
        """Products for this shopper now; the range of the catalog for a new one."""
        user = await self._user(user_id)
        features = user.features if user else {}
        exclude = frozenset(features.get("purchased", []))
        vector = user_vector(user, self._settings.short_term_weight) if user else None
        if vector is not None:
            where = ProductFilter(exclude_ids=exclude)
            hits = await asyncio.to_thread(
                self._store.search_products, vector, k * self._settings.candidate_factor, where
            )
            return Results(self._rank(hits, features, k), "personalized", personalized=True)
        categories: dict[str, float] = features.get("categories", {})
        if categories:
            top = max(categories, key=lambda name: categories[name])
            rows = await asyncio.to_thread(
                self._store.browse_products, k, ProductFilter(exclude_ids=exclude, category=top)
            )
            hits = [Hit(row, 0.0) for row in rows]
            return Results(self._rank(hits, features, k), "affinity", personalized=True)
        rows = await asyncio.to_thread(self._store.browse_products, max(200, k * 20), ProductFilter())
        items = [RankedItem(row, 0.0, {}) for row in interleave_categories(rows, k)]
        return Results(items, "popular", personalized=False)

    async def similar(self, product_id: str, k: int) -> Results | None:
        """Products like this one, or None if it is unknown."""
        found = await asyncio.to_thread(self._store.get_products, [product_id])
        if product_id not in found:
            return None
        where = ProductFilter(exclude_ids=frozenset({product_id}))
        hits = await asyncio.to_thread(self._store.search_products, found[product_id].vector, k, where)
        return Results(self._rank(hits, {}, k), "similar", personalized=False)
