"""Search, recommendations and similar items: retrieval plus re-ranking.

Blocking store calls run in worker threads, so the event loop keeps
answering while Milvus works.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from encoders.runner import Embedder
from online_learning.features import FEATURES, feature_matrix, ranking_features, row_features
from online_learning.item_stats import PRIOR_CLICKS, PRIOR_SKIPS
from ranker import candidates as sources
from ranker.impressions import ImpressionSink
from ranker.models import ModelHolder
from ranker.scoring import Weights, score_hit
from ranker.settings import RankerSettings
from ranker.store import Hit, ItemRow, PopularList, ProductFilter, ProductRow, UserRow, Vector, VectorStore

PRIOR_CTR = PRIOR_CLICKS / (PRIOR_CLICKS + PRIOR_SKIPS)
Strategy = Literal["personalized", "popular", "semantic", "similar"]


@dataclass(frozen=True, slots=True)
class RankedItem:
    """One result with its score and the contributions behind it."""

    product: ProductRow
    score: float
    contributions: dict[str, float]
    features: dict[str, float] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

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
            body["sources"] = list(self.sources)
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


def event_time(*groups: Iterable[ItemRow | PopularList]) -> int:
    """The newest event time the given rows and lists were stated at (0 for none)."""
    return max((row.ref_ms for group in groups for row in group), default=0)


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
        self._weights = Weights(
            settings.affinity_weight,
            settings.brand_weight,
            settings.covisit_weight,
            settings.popularity_weight,
            settings.covisit_cosine_weight,
        )
        self._search_weights = dataclasses.replace(self._weights, popularity=settings.search_popularity_weight)
        self._models = models
        self._impressions = impressions
        self._clock = clock
        self._half_life_ms = settings.covisit_half_life_s * 1000
        # The popular lists change once per item batch, but are read per
        # request: merged and sorted once per change, not per request.
        self._ranking = sources.PopularRanking.of((), self._half_life_ms)

    def _popular_ranking(self, lists: Sequence[PopularList]) -> sources.PopularRanking:
        """The merged ranking of ``lists``, from the last request's when they have not changed."""
        if self._ranking.lists != tuple(lists):
            self._ranking = sources.PopularRanking.of(lists, self._half_life_ms)
        return self._ranking

    async def _user(self, user_id: str | None) -> UserRow | None:
        return await asyncio.to_thread(self._store.get_user, user_id) if user_id else None

    def _rank(
        self,
        hits: Sequence[Hit],
        profile: dict[str, Any],
        k: int,
        rows: dict[str, ItemRow] | None = None,
        proposed: dict[str, sources.Candidate] | None = None,
        *,
        weights: Weights | None = None,
    ) -> tuple[list[RankedItem], int]:
        """Rank candidates; returns the items and the model version used (0: fixed blend).

        ``weights`` of the fixed blend: the recommendation blend's unless given.
        """
        snapshot = self._models.serving() if self._models else None
        # Click-through rates come from the newest snapshot even before its
        # model has learned enough to rank: logged features must carry them
        # early, or the model could never learn what they are worth.
        latest = self._models.current if self._models else None
        stats = latest.items if latest else None
        version = snapshot.version if snapshot else 0
        if not hits:
            return [], version
        now_ms = self._clock() * 1000
        rows = rows or {}
        proposed = proposed or {}
        at_ms = event_time(rows.values())
        categories: dict[str, float] = profile.get("categories", {})
        brands: dict[str, float] = profile.get("brands", {})
        products = [hit.product for hit in hits]
        ids = [product.product_id for product in products]
        found = [proposed.get(product_id) for product_id in ids]
        tags = [tuple(sorted(c.sources)) if c is not None else () for c in found]
        # One matrix for all candidates: a dict per candidate cost more than the model.
        matrix = feature_matrix(
            similarity=np.array([hit.similarity for hit in hits], dtype=np.float64),
            category_affinity=np.array([float(categories.get(p.category, 0.0)) for p in products]),
            brand_affinity=np.array([float(brands.get(p.brand, 0.0)) if p.brand else 0.0 for p in products]),
            popularity=np.array([sources.popularity(rows.get(i), at_ms, self._half_life_ms) for i in ids]),
            ctr=np.array([stats.ctr(i) if stats else PRIOR_CTR for i in ids]),
            price=np.array([p.price for p in products], dtype=np.float64),
            user_price=profile.get("price_mean"),
            age_days=np.array([(now_ms - p.updated_at) / 86_400_000 for p in products]),
            covisitation=np.array([c.covisitation if c else 0.0 for c in found]),
            covisit_cosine=np.array([c.covisit_cosine if c else 0.0 for c in found]),
            sources=[frozenset(c.sources) if c else frozenset() for c in found],
        )
        column = {name: matrix[:, j] for j, name in enumerate(FEATURES)}
        w = weights or self._weights
        # score_hit's sum, for every candidate at once (its terms, in its order).
        blend = (
            column["similarity"]
            + w.category_affinity * column["category_affinity"]
            + w.brand_affinity * column["brand_affinity"]
            + w.covisitation * column["covisitation"]
            + w.covisit_cosine * column["covisit_cosine"]
            + w.popularity * column["popularity"]
        )
        pool = list(range(len(hits)))
        if snapshot is not None:
            # The model learned from lists of about k items that a ranker
            # chose: beyond that pool it extrapolates (on MovieLens its
            # weights, learned within such lists, ranked the rest of the
            # candidates above them). So it re-ranks the blend's best only.
            ranked = blend.tolist()
            pool = sorted(pool, key=lambda i: (-ranked[i], ids[i]))[: k * self._settings.model_pool_factor]
            logits, parts, intercept = snapshot.model.score_matrix(FEATURES, matrix[pool])
            scores = np.zeros(len(hits))
            scores[pool] = logits
            parts_of = dict(zip(pool, parts, strict=True))

            def explain(i: int) -> dict[str, float]:
                return {**dict(zip(FEATURES, parts_of[i].tolist(), strict=True)), "intercept": intercept}

        else:
            scores = blend

            def explain(i: int) -> dict[str, float]:
                product = products[i]
                return score_hit(
                    hits[i].similarity,
                    product.category,
                    product.brand,
                    profile,
                    w,
                    covisitation=float(column["covisitation"][i]),
                    popularity=float(column["popularity"][i]),
                    covisit_cosine=float(column["covisit_cosine"][i]),
                ).contributions

        listed = scores.tolist()
        order = sorted(pool, key=lambda i: (-listed[i], ids[i]))[:k]
        items = [
            RankedItem(
                products[i],
                listed[i],
                explain(i),
                row_features(matrix, i),
                tags[i],
            )
            for i in order
        ]
        return items, version

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

    async def _item_rows(self, product_ids: Sequence[str], *, neighbors: bool = True) -> dict[str, ItemRow]:
        if not product_ids:
            return {}
        return await asyncio.to_thread(functools.partial(self._store.get_items, neighbors=neighbors), list(product_ids))

    async def search(self, query: str, user_id: str | None, k: int) -> Results:
        """Products matching the query's meaning, re-ranked by the shopper's profile."""
        user_task = asyncio.create_task(self._user(user_id))
        vectors = await self._encoder.encode([query], caller="api")
        user = await user_task
        hits = await asyncio.to_thread(
            self._store.search_products, vectors[0], k * self._settings.candidate_factor, ProductFilter()
        )
        rows = await self._item_rows([hit.product.product_id for hit in hits], neighbors=False)
        profile = user.features if user else {}
        items, version = self._rank(hits, profile, k, rows, weights=self._search_weights)
        return self._results(
            items,
            version,
            strategy="semantic",
            personalized=bool(profile),
            user_id=user_id,
            query=query,
            surface="search",
        )

    async def _candidates(
        self, profile: dict[str, Any], vector: Vector | None, want: int, seen: frozenset[str]
    ) -> tuple[list[Hit], dict[str, sources.Candidate], dict[str, ItemRow]]:
        """Merge the sources' candidates: hits with their products, what proposed each, their item rows."""
        enabled = self._settings.candidate_sources
        recent = list(profile.get("recent_items", []))[-sources.HISTORY :] if "covisit" in enabled else []
        categories: dict[str, float] = profile.get("categories", {})
        ann = (
            asyncio.to_thread(self._store.search_products, vector, want, ProductFilter(exclude_ids=seen))
            if vector is not None and "content" in enabled
            else asyncio.sleep(0, result=[])
        )
        # Without a vector (only unembedded products touched) the favourite
        # category stands in for content.
        category = (
            asyncio.to_thread(
                self._store.browse_products,
                want,
                ProductFilter(exclude_ids=seen, category=max(categories, key=lambda name: categories[name])),
            )
            if vector is None and categories and "category" in enabled
            else asyncio.sleep(0, result=[])
        )
        popular = asyncio.to_thread(self._store.popular_lists) if "popular" in enabled else asyncio.sleep(0, result=[])
        hits, history_rows, lists, favourite = await asyncio.gather(ann, self._item_rows(recent), popular, category)
        # Counts decay in event time: read them as of the newest event any of
        # them saw, never the wall clock (a quiet hour must not move a score).
        at_ms = event_time(history_rows.values(), lists)
        raw, partial = sources.covisit_scores(recent, history_rows, at_ms, self._half_life_ms)
        proposed: dict[str, sources.Candidate] = {}
        for source, ids in (
            ("covisit", sources.top(raw, want, seen)),
            ("popular", self._popular_ranking(lists).top(want, seen)),
        ):
            for product_id in ids:
                proposed.setdefault(product_id, sources.Candidate(product_id)).sources.add(source)
        for hit in hits:
            candidate = proposed.setdefault(hit.product.product_id, sources.Candidate(hit.product.product_id))
            candidate.sources.add("content")
            candidate.similarity = hit.similarity
        for row in favourite:
            if row.product_id not in proposed:
                hits.append(Hit(row, 0.0))
            proposed.setdefault(row.product_id, sources.Candidate(row.product_id, similarity=0.0)).sources.add(
                "category"
            )
        known = {hit.product.product_id for hit in hits}
        missing = [product_id for product_id in proposed if product_id not in known]
        products, rows = await asyncio.gather(
            asyncio.to_thread(self._store.get_products, missing), self._item_rows(list(proposed), neighbors=False)
        )
        for product_id in missing:
            product = products.get(product_id)
            if product is None or not product.in_stock:
                proposed.pop(product_id)  # deleted or sold out since the counts were made
                continue
            similarity = (
                float(product.vector @ vector) if vector is not None and product.vector.shape == vector.shape else 0.0
            )
            proposed[product_id].similarity = similarity
            hits.append(Hit(product, similarity))
        for product_id, candidate in proposed.items():
            candidate.covisitation = raw.get(product_id, 0.0)
        # The candidates' own rows may be newer. Every history row is older
        # than at_ms, so the partial sums (each carrying the square root of its
        # row's decay) move to the later time by one common factor.
        later_ms = event_time(history_rows.values(), rows.values(), lists)
        shift = math.sqrt(sources.decay(at_ms, later_ms, self._half_life_ms))
        mine = {product_id: partial[product_id] * shift for product_id in proposed if product_id in partial}
        for product_id, score in sources.normalise_covisits(mine, rows, later_ms, self._half_life_ms).items():
            proposed[product_id].covisit_cosine = score
        return hits, proposed, rows

    async def recommend(self, user_id: str, k: int, exclude: frozenset[str] = frozenset()) -> Results:
        """Products for this shopper now, never one they bought or touched lately; popular ones for a new shopper.

        ``exclude`` adds products the caller does not want (a cart, a page already shown).
        """
        user = await self._user(user_id)
        profile = user.features if user else {}
        history: list[str] = list(profile.get("recent_items", []))
        seen = frozenset(profile.get("purchased", [])) | frozenset(history) | exclude
        vector = user_vector(user, self._settings.short_term_weight) if user else None
        want = k * self._settings.candidate_factor
        if user is None or (vector is None and not history and not profile.get("categories")):
            return await self._popular(user_id, k, seen)
        hits, proposed, rows = await self._candidates(profile, vector, want, seen)
        if not hits:
            return await self._popular(user_id, k, seen)
        items, version = self._rank(hits, profile, k, rows, proposed)
        return self._results(
            items,
            version,
            strategy="personalized",
            personalized=True,
            user_id=user_id,
            query=None,
            surface="recommendations",
        )

    async def _popular(self, user_id: str, k: int, seen: frozenset[str]) -> Results:
        """The most popular products now (decayed); the range of the catalog before anyone touched anything."""
        now_ms = self._clock() * 1000
        enabled = "popular" in self._settings.candidate_sources
        lists = await asyncio.to_thread(self._store.popular_lists) if enabled else []
        ranking = self._popular_ranking(lists)
        scores = ranking.scores  # as of the newest list, as before
        # Sold-out or deleted products drop out, so ask for some spare ones.
        ids = ranking.top(2 * k, seen)
        products = await asyncio.to_thread(self._store.get_products, ids) if ids else {}
        chosen = [products[i] for i in ids if i in products and products[i].in_stock][:k]
        # Too few popular products yet (a young shop): top up with the range
        # of the catalog, after them.
        spare: list[ProductRow] = []
        if len(chosen) < k:
            taken = seen | {product.product_id for product in chosen}
            rows = await asyncio.to_thread(
                self._store.browse_products, max(200, k * 20), ProductFilter(exclude_ids=taken)
            )
            spare = interleave_categories(rows, k - len(chosen))
        items = [
            RankedItem(
                product,
                scores[product.product_id],
                {"popularity": scores[product.product_id]},
                ranking_features(
                    similarity=0.0,
                    category_affinity=0.0,
                    brand_affinity=0.0,
                    popularity=scores[product.product_id],
                    ctr=PRIOR_CTR,
                    price=product.price,
                    user_price=None,
                    age_days=(now_ms - product.updated_at) / 86_400_000,
                    position=1,
                    sources=frozenset({"popular"}),
                ),
                ("popular",),
            )
            for product in chosen
        ]
        items += [RankedItem(row, 0.0, {}) for row in spare]
        return self._results(
            items, 0, strategy="popular", personalized=False, user_id=user_id, query=None, surface="recommendations"
        )

    async def item(self, product_id: str) -> ItemRow | None:
        """The behaviour signal of a product as served, or None when nobody touched it."""
        return (await self._item_rows([product_id])).get(product_id)

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
        items, version = self._rank(hits, {}, k, weights=self._search_weights)
        return self._results(
            items, version, strategy="similar", personalized=False, user_id=None, query=None, surface=None
        )
