"""Fold a batch of shopper events into profiles: one lookup, one encode, one upsert.

Kept apart from Faust so the same code runs in the worker, in tests and in
benchmarks; the caller owns where profiles are loaded from and saved to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from encoders.runner import Embedder
from ranker.store import Vector, VectorStore
from streamrec import failpoints
from streams.covisitation import ItemDeltas
from streams.events import Click, Purchase, Search, UserEvent
from streams.product_cache import ProductCache
from streams.profiles import EVENT_WEIGHT, ProductInfo, UserProfile
from streams.retry import with_retries

LATE_EVENTS = Counter(
    "streamrec_late_events_total", "Events older than their shopper's newest event by more than the lateness bound"
)
FRESHNESS_SECONDS = Histogram(
    "streamrec_profile_freshness_seconds",
    "Event time to the user's profile being visible in the vector store",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


@dataclass(frozen=True, slots=True)
class Folded:
    """Profiles changed by a batch, with the index of each user's last event in it."""

    profiles: dict[str, tuple[UserProfile, int]]
    applied: list[bool]  # per event, in order: False for a duplicate or a parked event
    # Users whose events in the batch were all duplicates. A replay after a
    # crash may find the profile saved but its serving row never written, so
    # these are published again (an idempotent upsert of the saved state).
    replayed: dict[str, UserProfile] = field(default_factory=dict)
    # Indexes of clicks and purchases whose product is not in the store yet:
    # not applied, for the caller to park (see ``streams.parking``).
    parked: list[int] = field(default_factory=list)
    # What the applied clicks and purchases add to product co-visitation and
    # popularity, for the products' own partitions (see ``streams.items``).
    items: ItemDeltas = field(default_factory=ItemDeltas)

    @property
    def duplicates(self) -> int:
        """Events that changed nothing because they were applied before."""
        return self.applied.count(False) - len(self.parked)

    def outcome(self, index: int) -> str:
        """``processed``, ``duplicate`` or ``parked`` for the event at ``index``."""
        if self.applied[index]:
            return "processed"
        return "parked" if index in self.parked else "duplicate"


class BehaviorUpdater:
    """Applies batches of user events to profiles and publishes them to the store."""

    def __init__(
        self,
        store: VectorStore,
        encoder: Embedder,
        late_after_ms: int = 60_000,
        *,
        park_unknown: bool = True,
        products: ProductCache | None = None,
    ) -> None:
        self.store = store
        self.encoder = encoder
        # Without a cache every batch asks the store for all of its products.
        self.products = products if products is not None else ProductCache(0, 0.0)
        # Without parking a click on an unknown product is applied without
        # the product's vector, category or brand.
        self.park_unknown = park_unknown
        # Late events are still applied (decayed scores are order-insensitive);
        # they are counted so a lagging producer shows on a dashboard.
        self.late_after_ms = late_after_ms

    async def fold(self, events: Sequence[UserEvent], load: Callable[[str], UserProfile]) -> Folded:
        """Apply events in order; ``load`` gives a user's current profile."""
        product_ids = sorted({e.product_id for e in events if not isinstance(e, Search)})
        queries = sorted({e.query for e in events if isinstance(e, Search)})
        products, missing = self.products.get_many(product_ids)
        if missing:
            loaded = await with_retries("load products", lambda: asyncio.to_thread(self.store.get_products, missing))
            self.products.put_many(loaded)
            products.update(loaded)
        query_vectors: dict[str, Vector] = (
            dict(zip(queries, await self.encoder.encode(queries, caller="worker"), strict=True)) if queries else {}
        )
        changed: dict[str, tuple[UserProfile, int]] = {}
        replayed: dict[str, UserProfile] = {}
        applied: list[bool] = []
        parked: list[int] = []
        items = ItemDeltas()
        for index, event in enumerate(events):
            failpoints.check("behavior.event", event.event_id)
            was_replayed = event.user_id in replayed
            if event.user_id in changed:
                profile = changed[event.user_id][0]
            else:
                profile = replayed.pop(event.user_id) if was_replayed else load(event.user_id)
            info = None
            if not isinstance(event, Search) and event.product_id in products:
                row = products[event.product_id]
                info = ProductInfo(row.vector, row.category, row.brand, row.price)
            elif not isinstance(event, Search) and self.park_unknown and not profile.has_seen(event.event_id):
                parked.append(index)
                applied.append(False)
                if was_replayed:
                    replayed[event.user_id] = profile
                continue
            query_vector = query_vectors.get(event.query) if isinstance(event, Search) else None
            late = bool(profile.last_event_ms) and event.ts < profile.last_event_ms - self.late_after_ms
            history = profile.recent_items
            applied.append(profile.apply(event, info, query_vector))
            if applied[-1] and isinstance(event, Click | Purchase):
                kind = "purchase" if isinstance(event, Purchase) else "click"
                items.add(history, event.product_id, EVENT_WEIGHT[kind], event.ts)
            if applied[-1] and late:
                LATE_EVENTS.inc()
            if applied[-1]:
                changed[event.user_id] = (profile, index)
            elif event.user_id not in changed:
                replayed[event.user_id] = profile
        return Folded(changed, applied, replayed, parked, items)

    async def publish(self, profiles: Sequence[UserProfile], replayed: Sequence[UserProfile] = ()) -> None:
        """Upsert the serving view of changed and replayed profiles in one call."""
        await self.publication(profiles, replayed)()

    def publication(
        self, profiles: Sequence[UserProfile], replayed: Sequence[UserProfile] = ()
    ) -> Callable[[], Awaitable[None]]:
        """The upsert of :meth:`publish` as a job to run later; the rows are taken now, as the profiles are."""
        rows = [profile.to_row(self.encoder.dim) for profile in [*profiles, *replayed]]
        event_ms = [profile.last_event_ms for profile in profiles]

        async def upsert() -> None:
            if not rows:
                return
            await with_retries("upsert users", lambda: asyncio.to_thread(self.store.upsert_users, rows))
            now_ms = time.time() * 1000
            for last_event_ms in event_ms:  # a replayed profile's age says nothing about freshness
                FRESHNESS_SECONDS.observe(max(0.0, now_ms - last_event_ms) / 1000)

        return upsert
