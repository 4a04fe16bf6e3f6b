"""Search, recommendations and similar items: retrieval plus re-ranking.

Blocking store calls run in worker threads, so the event loop keeps
answering while Milvus works.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from encoders.runner import Embedder
from online_learning.features import ranking_features
from online_learning.item_stats import PRIOR_CLICKS, PRIOR_SKIPS, ItemStats
from ranker.impressions import ImpressionSink
from ranker.models import ModelHolder
from ranker.scoring import Weights, score_hit
from ranker.settings import RankerSettings
from ranker.store import Hit, ProductFilter, ProductRow, UserRow, Vector, VectorStore

PRIOR_CTR = PRIOR_CLICKS / (PRIOR_CLICKS + PRIOR_SKIPS)
Strategy = Literal["personalized", "affinity", "popular", "semantic", "similar"]


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One result with its score and the contributions behind it."""

    product: ProductRow
    score: float
    contributions: dict[str, float]
    features: dict[str, float] = field(default_factory=dict)

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        """The item as the API returns it; ``explain`` adds the score's contributions."""
        p = self.product
        body: dict[str, Any] = {
            "product_id": p.product_id,
            "title": p.title,
            "category": p.category,
            "brand": p.brand,
            "price": round(p.price, 2),
            "score": round(self.score, 6),
        }
        if explain:
            body["contributions"] = {name: round(value, 6) for name, value in self.contributions.items()}
        return body


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
    """Answers search, recommendation and similar-item requests.

    Candidates are ranked by the learned model once a healthy one has seen
    enough examples, by a fixed blend of similarity and affinity before that.
    Result lists shown to a known shopper are logged as impressions with the
    feature values they were ranked on.
    """

    def __init__(
        self,
        store: VectorStore,
        encoder: Embedder,
        settings: RankerSettings,
        *,
        models: ModelHolder | None = None,
        impressions: ImpressionSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._encoder = encoder
        self._settings = settings
        self._weights = Weights(settings.affinity_weight, settings.brand_weight)
        self._models = models
        self._impressions = impressions
        self._clock = clock

    async def _user(self, user_id: str | None) -> UserRow | None:
        return await asyncio.to_thread(self._store.get_user, user_id) if user_id else None

    def _features(self, hit: Hit, profile: dict[str, Any], items: ItemStats | None, now_ms: float) -> dict[str, float]:
        product = hit.product
        categories: dict[str, float] = profile.get("categories", {})
        brands: dict[str, float] = profile.get("brands", {})
        return ranking_features(
            similarity=hit.similarity,
            category_affinity=float(categories.get(product.category, 0.0)),
            brand_affinity=float(brands.get(product.brand, 0.0)) if product.brand else 0.0,
            popularity=items.popularity(product.product_id) if items else 0.0,
            ctr=items.ctr(product.product_id) if items else PRIOR_CTR,
            price=product.price,
            user_price=profile.get("price_mean"),
            age_days=(now_ms - product.updated_at) / 86_400_000,
            position=1,
        )

    def _rank(self, hits: Sequence[Hit], profile: dict[str, Any], k: int) -> tuple[list[RankedItem], int]:
        """Rank candidates; returns the items and the model version used (0: fixed blend)."""
        snapshot = self._models.serving() if self._models else None
        # Item statistics come from the newest snapshot even before its model
        # has learned enough to rank: logged features must carry them early,
        # or the model could never learn what they are worth.
        latest = self._models.current if self._models else None
        stats = latest.items if latest else None
        now_ms = self._clock() * 1000
        items = []
        for hit in hits:
            features = self._features(hit, profile, stats, now_ms)
            if snapshot is not None:
                scored = snapshot.model.score(features)
                items.append(RankedItem(hit.product, scored.logit, scored.contributions, features))
            else:
                blend = score_hit(hit.similarity, hit.product.category, hit.product.brand, profile, self._weights)
                items.append(RankedItem(hit.product, blend.score, blend.contributions, features))
        items.sort(key=lambda item: (-item.score, item.product.product_id))
        return items[:k], snapshot.version if snapshot else 0

    def _results(
        self,
        items: list[RankedItem],
        version: int,
        *,
        strategy: Strategy,
        personalized: bool,
        user_id: str | None,
        query: str | None,
        surface: Literal["search", "recommendations"] | None,
    ) -> Results:
        request_id = uuid.uuid4().hex
        if user_id and surface and items and self._impressions is not None:
            self._impressions.log(
                user_id,
                {
                    "event_id": request_id,
                    "ts": int(self._clock() * 1000),
                    "schema_version": 1,
                    "user_id": user_id,
                    "query": query,
                    "surface": surface,
                    "model_version": version,
                    "items": [
                        {
                            "product_id": item.product.product_id,
                            "position": position,
                            "features": {**item.features, "position": math.log2(position)},
                        }
                        for position, item in enumerate(items, start=1)
                    ],
                },
            )
        return Results(items, strategy, personalized, {"request_id": request_id, "model_version": version})

    async def search(self, query: str, user_id: str | None, k: int) -> Results:
        """Products matching the query's meaning, re-ranked by the shopper's profile."""
        user_task = asyncio.create_task(self._user(user_id))
        vectors = await self._encoder.encode([query], caller="api")
        user = await user_task
        hits = await asyncio.to_thread(
            self._store.search_products, vectors[0], k * self._settings.candidate_factor, ProductFilter()
        )
        profile = user.features if user else {}
        items, version = self._rank(hits, profile, k)
        return self._results(
            items,
            version,
            strategy="semantic",
            personalized=bool(profile),
            user_id=user_id,
            query=query,
            surface="search",
        )

    async def recommend(self, user_id: str, k: int) -> Results:
        """Products for this shopper now; the range of the catalog for a new one."""
        user = await self._user(user_id)
        profile = user.features if user else {}
        exclude = frozenset(profile.get("purchased", []))
        vector = user_vector(user, self._settings.short_term_weight) if user else None
        if vector is not None:
            where = ProductFilter(exclude_ids=exclude)
            hits = await asyncio.to_thread(
                self._store.search_products, vector, k * self._settings.candidate_factor, where
            )
            items, version = self._rank(hits, profile, k)
            return self._results(
                items,
                version,
                strategy="personalized",
                personalized=True,
                user_id=user_id,
                query=None,
                surface="recommendations",
            )
        categories: dict[str, float] = profile.get("categories", {})
        if categories:
            top = max(categories, key=lambda name: categories[name])
            rows = await asyncio.to_thread(
                self._store.browse_products, k, ProductFilter(exclude_ids=exclude, category=top)
            )
            items, version = self._rank([Hit(row, 0.0) for row in rows], profile, k)
            return self._results(
                items,
                version,
                strategy="affinity",
                personalized=True,
                user_id=user_id,
                query=None,
                surface="recommendations",
            )
        rows = await asyncio.to_thread(self._store.browse_products, max(200, k * 20), ProductFilter())
        items = [RankedItem(row, 0.0, {}) for row in interleave_categories(rows, k)]
        return self._results(items, 0, strategy="popular", personalized=False, user_id=None, query=None, surface=None)

    async def profile(self, user_id: str) -> UserRow | None:
        """The serving view of a shopper's profile, or None for an unknown shopper."""
        return await self._user(user_id)

    async def similar(self, product_id: str, k: int) -> Results | None:
        """Products like this one, or None if it is unknown."""
        found = await asyncio.to_thread(self._store.get_products, [product_id])
        if product_id not in found:
            return None
        where = ProductFilter(exclude_ids=frozenset({product_id}))
        hits = await asyncio.to_thread(self._store.search_products, found[product_id].vector, k, where)
        items, version = self._rank(hits, {}, k)
        return self._results(
            items, version, strategy="similar", personalized=False, user_id=None, query=None, surface=None
        )
