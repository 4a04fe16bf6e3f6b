"""The prequential replay: before each purchase, ask every method for the shopper's top k; then apply the event.

streamrec runs in this process on the handlers its stream uses: the
behavior updater folds each event into the shopper's profile and the
product's co-visitation deltas, the item updater applies those, the
ranker answers from the store they publish to, and its logged impressions
are joined with the purchases that follow into examples that the learner
learns and publishes as snapshots. Baselines see the same events in the same
order. Nothing is applied before the requests that precede it, so no answer
can depend on a later event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from encoders.runner import Embedder
from online_learning.decay import DecayedScores
from online_learning.join import JoinState
from online_learning.learner import Learner
from online_learning.settings import LearningSettings
from ranker.models import ModelHolder
from ranker.service import Recommender
from ranker.settings import RankerSettings
from ranker.store import MemoryStore, ProductRow
from streamrec.evaluation.baselines import Baseline
from streamrec.evaluation.data import CatalogItem, Dataset, Interaction
from streamrec.evaluation.metrics import Evaluation, Request
from streamrec.kafka_client import KafkaConnection
from streams.covisitation import ItemState
from streams.events import Click, ProductUpsert, Purchase
from streams.items import ItemUpdater, split_by_partition
from streams.labels import join_event
from streams.profiles import UserProfile
from streams.updater import BehaviorUpdater

COLD_EVENTS = 5  # a shopper with fewer prior events is cold
PARTITIONS = 4  # item partitions, as a default deployment has
SNAPSHOT_EVERY = 200  # examples between published snapshots (the learner's 10 s at a few dozen examples/s)
Progress = Callable[[int, int], None]


def catalog_event(index: int, item: CatalogItem, ts_ms: int) -> ProductUpsert:
    """The product event a data set's catalog entry becomes (the live replay publishes the same)."""
    return ProductUpsert(
        event_id=f"p{index}",
        ts=ts_ms,
        schema_version=1,
        product_id=item.item_id,
        title=item.title or item.item_id,
        category=item.category or "unknown",
        price=max(item.price, 0.0),
    )


class System(Protocol):
    """What the replay drives: streamrec in this process, or live behind Kafka (``streamrec.evaluation.live``)."""

    async def load_catalog(self, dataset: Dataset) -> None:
        """Make every product of the data set searchable."""

    async def recommend(self, method: str, user_id: str, k: int, exclude: frozenset[str], at_ms: int) -> list[str]:
        """One method's top ``k`` for the shopper at event time ``at_ms``, none in ``exclude``."""

    async def apply(self, index: int, event: Interaction) -> None:
        """Apply the event at ``index`` of the stream, returning once its effects are visible."""

    def model_version(self) -> int:
        """Version of the learned model ranking now (0: the fixed blend)."""

    def examples_learned(self) -> int:
        """Examples the learner has learned."""


class _Impressions:
    """The ranker's impression sink: opens each logged list in the shopper's join state."""

    def __init__(self, replay: StreamrecReplay) -> None:
        self._replay = replay

    def log(self, user_id: str, impression: dict[str, Any]) -> None:
        self._replay.open_impression(user_id, impression)


class StreamrecReplay:
    """streamrec's profile, item, ranking and learning handlers over an in-memory store."""

    def __init__(
        self,
        encoder: Embedder,
        *,
        ranker: RankerSettings,
        learning: LearningSettings,
        profile_half_life_ms: float,
    ) -> None:
        self.store = MemoryStore()
        self.encoder = encoder
        self.now_ms = 0
        self._half_life_ms = profile_half_life_ms
        self._item_half_life_ms = ranker.covisit_half_life_s * 1000
        self.behavior = BehaviorUpdater(self.store, encoder, late_after_ms=2**62, park_unknown=False)
        self.items = ItemUpdater(self.store, self._item_half_life_ms)
        self.profiles: dict[str, UserProfile] = {}
        self.item_states: dict[str, ItemState] = {}
        self.popular: dict[int, DecayedScores] = {}
        self.joins: dict[str, JoinState] = {}
        self._window_ms = int(learning.attribution_window_s * 1000)
        # Built, never started: only its learn/snapshot logic is used here.
        self.learner = Learner(learning, KafkaConnection(bootstrap="unused:0"), "unused", "unused", self._clock)
        self.holder = ModelHolder(learning.min_examples_to_serve, learning.min_auc)
        self._offset = 0
        clock = self._clock
        self.rankers = {
            "streamrec": Recommender(
                self.store, encoder, ranker, models=self.holder, impressions=_Impressions(self), clock=clock
            ),
            "streamrec-blend": Recommender(self.store, encoder, ranker, clock=clock),
            "content": Recommender(
                self.store, encoder, ranker.model_copy(update={"candidate_sources": ("content",)}), clock=clock
            ),
        }

    def _clock(self) -> float:
        return self.now_ms / 1000

    def model_version(self) -> int:
        """Version of the snapshot the ranker serves (0 before the first)."""
        return self.holder.version

    def examples_learned(self) -> int:
        """Examples the in-process learner has learned."""
        return int(self.learner.model.learned)

    async def load_catalog(self, dataset: Dataset, batch: int = 256) -> None:
        """Embed every product's text and store it, as the catalog agent does."""
        items = list(dataset.catalog.values())
        # Stamped with the stream's first event time, as the live replay publishes them.
        first_ts = dataset.interactions[0].ts_ms if dataset.interactions else 0
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            # The text the catalog agent embeds for the same product event.
            texts = [catalog_event(n, item, first_ts).text() for n, item in enumerate(chunk, start=start)]
            vectors = await self.encoder.encode(texts, caller="worker")
            self.store.upsert_products(
                [
                    ProductRow(i.item_id, v, i.title, i.category, "", i.price, True, first_ts, self.encoder.name)
                    for i, v in zip(chunk, vectors, strict=True)
                ]
            )

    async def recommend(self, method: str, user_id: str, k: int, exclude: frozenset[str], at_ms: int) -> list[str]:
        """One method's top ``k`` for the shopper at event time ``at_ms`` (the ranker's clock)."""
        self.now_ms = max(self.now_ms, at_ms)
        results = await self.rankers[method].recommend(user_id, k, exclude)
        return [item.product.product_id for item in results.items]

    def open_impression(self, user_id: str, impression: dict[str, Any]) -> None:
        """Open a served list in the shopper's join state (what the label join does with the impressions topic)."""
        state = self.joins.setdefault(user_id, JoinState(None, self._window_ms))
        self._learn(state.add_impression(impression["event_id"], impression["ts"], impression["items"], self.now_ms))

    async def apply(self, index: int, event: Interaction) -> None:
        """Apply one event as the stream would: profile, products' counts, then labels."""
        self.now_ms = max(self.now_ms, event.ts_ms)
        kind = Purchase if event.kind == "purchase" else Click
        parsed = kind(
            event_id=f"e{index}", ts=event.ts_ms, schema_version=1, user_id=event.user_id, product_id=event.item_id
        )
        folded = await self.behavior.fold([parsed], self._profile)
        for user_id, (profile, _) in folded.profiles.items():
            self.profiles[user_id] = profile
        await self.behavior.publish([profile for profile, _ in folded.profiles.values()])
        if folded.items:
            messages = split_by_partition(folded.items, PARTITIONS)
            changed = self.items.fold(
                [(partition, index, deltas) for partition, deltas in sorted(messages.items())],
                self._item,
                self._popular,
            )
            for item_id, (item_state, _) in changed.states.items():
                self.item_states[item_id] = item_state
            self.popular.update(changed.popular)
            await self.items.publish(changed)
        state = self.joins.get(event.user_id)
        if state is not None:
            # The join's expiry timer, then the join itself, as the label agent runs them.
            self._learn(state.close_expired(self.now_ms))
            self._learn(join_event(state, parsed, self.now_ms))

    def _learn(self, examples: Sequence[Any]) -> None:
        for example in examples:
            self.learner.learn(example, 0, self._offset)
            self._offset += 1
            if self._offset % SNAPSHOT_EVERY == 0 and (snapshot := self.learner.snapshot()) is not None:
                self.holder.offer(snapshot)

    def _profile(self, user_id: str) -> UserProfile:
        return self.profiles.get(user_id) or UserProfile(user_id, self._half_life_ms)

    def _item(self, item_id: str) -> ItemState:
        return self.item_states.get(item_id) or ItemState.new(self._item_half_life_ms)

    def _popular(self, partition: int) -> DecayedScores:
        return self.popular.get(partition) or DecayedScores(self._item_half_life_ms)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay measured, and how long it took."""

    evaluation: Evaluation
    methods: tuple[str, ...]
    elapsed_s: float
    model_version: int
    examples_learned: int


async def replay(
    dataset: Dataset,
    streamrec: System,
    baselines: Sequence[Baseline],
    *,
    k: int = 20,
    methods: Sequence[str] = ("streamrec", "streamrec-blend", "content"),
    progress: Progress | None = None,
    on_request: Callable[[str, Request], None] | None = None,
) -> ReplayResult:
    """Replay ``dataset`` in event-time order, asking every method before each purchase.

    ``on_request`` sees every ``(method, request)`` as it is counted.
    """
    started = time.perf_counter()
    await streamrec.load_catalog(dataset)
    evaluation = Evaluation(catalog_size=len(dataset.catalog))

    def record(method: str, request: Request) -> None:
        evaluation.add(method, request)
        if on_request is not None:
            on_request(method, request)

    seen: dict[str, set[str]] = {}
    prior: dict[str, int] = {}
    total = len(dataset.interactions)
    for index, event in enumerate(dataset.interactions):
        if event.kind == "purchase":
            exclude = frozenset(seen.get(event.user_id, ()))
            cold = prior.get(event.user_id, 0) < COLD_EVENTS
            for method in methods:
                began = time.perf_counter()
                ranked = await streamrec.recommend(method, event.user_id, k, exclude, event.ts_ms)
                latency = time.perf_counter() - began
                record(method, Request(index, total, event.item_id, tuple(ranked), cold, latency))
            for baseline in baselines:
                began = time.perf_counter()
                ranked = baseline.recommend(event.user_id, k, exclude, event.ts_ms)
                latency = time.perf_counter() - began
                record(baseline.name, Request(index, total, event.item_id, tuple(ranked), cold, latency))
        await streamrec.apply(index, event)
        for baseline in baselines:
            baseline.observe(event)
        seen.setdefault(event.user_id, set()).add(event.item_id)
        prior[event.user_id] = prior.get(event.user_id, 0) + 1
        if progress is not None:
            progress(index + 1, total)
    return ReplayResult(
        evaluation,
        (*methods, *(b.name for b in baselines)),
        time.perf_counter() - started,
        streamrec.model_version(),
        streamrec.examples_learned(),
    )
