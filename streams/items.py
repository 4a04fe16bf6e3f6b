"""The item side of the stream: co-visitation and popularity per product, and popular lists.

The behavior agent folds a batch of clicks and purchases into per-product
deltas (``streams.covisitation``) and sends them, one message per partition
of the item topic, to the partition that owns each product. The item agent
applies them to a changelogged table keyed by product, keeps the most
popular products of its partition, and upserts the serving rows the ranker
reads: one writer per product, as Milvus needs.

Deltas are sent after the profiles that produced them are saved: a crash
between the two loses that batch's contribution to the counts (decayed
statistics, so the effect fades) rather than counting it twice on replay.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
import orjson
from faust.types import StreamT
from prometheus_client import Counter

from online_learning.decay import DecayedScores
from ranker.store import PopularList, VectorStore
from streams import changelog
from streams.batching import RangeReader, run_batches
from streams.contain import apply_contained
from streams.covisitation import ItemDelta, ItemDeltas, ItemState
from streams.events import Rejection
from streams.intake import RawEvent
from streams.retry import with_retries
from streams.settings import StreamSettings

log = logging.getLogger(__name__)
DeadLetter = Callable[[RawEvent, Rejection, str], Awaitable[None]]

ITEM_UPDATES = Counter("streamrec_item_updates_total", "Products whose co-visitation or popularity changed")

# Products each partition's popular list serves; twice as many are tracked
# so one that slips below the cut keeps its count.
POPULAR_SIZE = 200


def item_partition(item_id: str, partitions: int) -> int:
    """The partition of the item topic that owns ``item_id`` (stable across processes and restarts).

    >>> item_partition("p1", 4) == item_partition("p1", 4)
    True
    """
    return zlib.crc32(item_id.encode("utf-8")) % partitions


def split_by_partition(deltas: ItemDeltas, partitions: int) -> dict[int, dict[str, ItemDelta]]:
    """Group a batch's deltas by the partition that owns each product."""
    grouped: dict[int, dict[str, ItemDelta]] = {}
    for item_id, delta in deltas.items.items():
        grouped.setdefault(item_partition(item_id, partitions), {})[item_id] = delta
    return grouped


def encode_deltas(deltas: dict[str, ItemDelta]) -> bytes:
    """One message of the item topic."""
    return orjson.dumps({"items": {item_id: d.to_dict() for item_id, d in deltas.items()}})


def decode_deltas(raw: bytes | None) -> dict[str, ItemDelta] | Rejection:
    """Inverse of :func:`encode_deltas`; a message that is not one is a rejection, never an exception."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:  # also for nesting deeper than orjson reads
        return Rejection("invalid_json", f"item deltas: {exc}", raw or b"")
    try:
        return {str(item_id): ItemDelta.from_dict(delta) for item_id, delta in data["items"].items()}
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return Rejection("invalid_fields", f"item deltas: {type(exc).__name__}: {exc}", raw or b"")


class DeltaTopic(Protocol):
    """The item topic as ``send_deltas`` uses it (a faust topic, or ``streams.fakes.MemoryTopic``)."""

    async def send(
        self, *, key: Any = None, value: Any = None, partition: int | None = None, force: bool = False
    ) -> Any:
        """Queue one message; returns a future of the broker's acknowledgement."""


async def send_deltas(topic: DeltaTopic, deltas: ItemDeltas, partitions: int) -> None:
    """One message per partition owning some of the products, each retried on its own until the broker has it.

    The profiles behind the deltas are saved by now: a failure raised to the
    batch would replay its events as duplicates and lose these deltas, and
    resending the partitions that did arrive would count them twice.
    """
    if not deltas:
        return

    async def send_one(partition: int, value: bytes) -> None:
        async def attempt() -> None:
            # force=True: sent now, not when faust acknowledges the current event.
            future = await topic.send(key=b"items", value=value, partition=partition, force=True)
            await future

        await with_retries("send item deltas", attempt)

    grouped = sorted(split_by_partition(deltas, partitions).items())
    await asyncio.gather(*(send_one(partition, encode_deltas(part)) for partition, part in grouped))


@dataclass(slots=True)
class FoldedItems:
    """Item states and popular lists changed by a batch, with the partition of each."""

    states: dict[str, tuple[ItemState, int]] = field(default_factory=dict)
    popular: dict[int, DecayedScores] = field(default_factory=dict)


class ItemUpdater:
    """Applies deltas to item states and popular lists and publishes their serving rows.

    Kept apart from faust (``load`` and ``popular`` are injected), so the
    same code runs in the worker, in the evaluation replay and in tests.
    """

    def __init__(self, store: VectorStore, half_life_ms: float, popular_size: int = POPULAR_SIZE) -> None:
        self.store = store
        self.half_life_ms = half_life_ms
        self.popular_size = popular_size

    def fold(
        self,
        messages: Sequence[tuple[int, int, dict[str, ItemDelta]]],
        load: Callable[[str], ItemState],
        popular: Callable[[int], DecayedScores],
    ) -> FoldedItems:
        """Apply ``(partition, offset, deltas)`` messages in order; a message a product has seen changes nothing.

        Each product's state remembers the offset of the last message applied
        to it, in the same record as the counts, so a message delivered or
        applied again (a replay after a crash, a batch retried after an error)
        is recognised per product whatever moment the failure picked.
        """
        folded = FoldedItems()
        for partition, offset, deltas in messages:
            ranking = folded.popular.get(partition)
            if ranking is None:
                ranking = folded.popular[partition] = popular(partition)
            for item_id, delta in deltas.items():
                state = folded.states[item_id][0] if item_id in folded.states else load(item_id)
                if offset <= state.offset:
                    continue
                state.apply(delta)
                state.offset = offset
                folded.states[item_id] = (state, partition)
                if delta.popularity:
                    # All counts decay alike, so the list's order among untouched
                    # products holds; a touched one takes its exact new count.
                    at = max(state.popularity.ref_ms, ranking.ref_ms)
                    ranking.add(item_id, state.popularity.get("", at) - ranking.get(item_id, at), at)
            ranking.prune(2 * self.popular_size)
        ITEM_UPDATES.inc(len(folded.states))
        return folded

    def popular_list(self, partition: int, ranking: DecayedScores) -> PopularList:
        """The serving view of one partition's most popular products."""
        top = sorted(ranking.items(), key=lambda kv: (-kv[1], kv[0]))[: self.popular_size]
        return PopularList(partition, dict(top), ranking.ref_ms)

    async def publish(self, folded: FoldedItems) -> None:
        """Upsert the changed item rows and popular lists."""
        rows = [state.to_row(item_id) for item_id, (state, _) in folded.states.items()]
        lists = [self.popular_list(p, ranking) for p, ranking in sorted(folded.popular.items())]
        if rows:
            await with_retries("upsert items", lambda: asyncio.to_thread(self.store.upsert_items, rows))
        if lists:
            await with_retries("upsert popular", lambda: asyncio.to_thread(self.store.upsert_popular, lists))


def popular_to_dict(ranking: DecayedScores) -> dict[str, Any]:
    """JSON-ready state of a popular list for its table."""
    return {"scores": dict(ranking.items()), "ref_ms": ranking.ref_ms}


def popular_from_dict(data: dict[str, Any] | None, half_life_ms: float) -> DecayedScores:
    """Inverse of :func:`popular_to_dict`."""
    if data is None:
        return DecayedScores(half_life_ms)
    return DecayedScores(half_life_ms, dict(data.get("scores", {})), int(data.get("ref_ms", 0)))


class ItemAgent:
    """Registers the item agent and its two tables on a faust app."""

    def __init__(
        self,
        app: faust.App,
        settings: StreamSettings,
        store: VectorStore,
        dead_letter: DeadLetter,
        *,
        refetch: RangeReader | None = None,
    ) -> None:
        self.settings = settings
        self._dead_letter = dead_letter
        self._refetch = refetch
        self.updater = ItemUpdater(store, settings.covisit_half_life_s * 1000)
        # JSON codec, no value_type: see the profiles table in streams/worker.py.
        self.items = app.Table(
            "items", default=None, partitions=settings.topic_partitions, extra_topic_configs=changelog.TOPIC_CONFIG
        )
        self.popular = app.Table(
            "popular", default=None, partitions=settings.topic_partitions, extra_topic_configs=changelog.TOPIC_CONFIG
        )
        self.topic = app.topic(
            settings.topic_item_deltas,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )
        app.agent(self.topic, name="items")(self._agent)

    async def send(self, deltas: ItemDeltas) -> None:
        """Send a batch's deltas to the partitions owning their products and wait for the broker."""
        await send_deltas(self.topic, deltas, self.settings.topic_partitions)

    async def _agent(self, stream: StreamT[Any]) -> AsyncIterator[None]:
        settings = self.settings
        async for _ in run_batches(
            stream, settings.item_batch_max, settings.item_batch_wait_s, self._batch, reader=self._refetch
        ):
            yield None

    async def _batch(self, events: Sequence[RawEvent]) -> None:
        accepted: list[tuple[RawEvent, dict[str, ItemDelta]]] = []
        for event in events:
            result = decode_deltas(event.value)
            if isinstance(result, Rejection):
                await self._dead_letter(event, result, "items")
            else:
                accepted.append((event, result))
        await apply_contained("items", accepted, self.apply, self._dead_letter)

    async def apply(self, batch: Sequence[tuple[RawEvent, dict[str, ItemDelta]]]) -> None:
        """Fold a batch of delta messages; save the tables, then publish the serving rows."""
        half_life = self.updater.half_life_ms
        folded = self.updater.fold(
            [(source.message.partition, source.message.offset, deltas) for source, deltas in batch],
            self._load,
            lambda partition: popular_from_dict(self.popular.get(str(partition)), half_life),
        )
        await changelog.write(
            self.items, [(p, item_id, state.to_dict()) for item_id, (state, p) in folded.states.items()]
        )
        await changelog.write(self.popular, [(p, str(p), popular_to_dict(r)) for p, r in folded.popular.items()])
        await self.updater.publish(folded)

    def _load(self, item_id: str) -> ItemState:
        stored = self.items.get(item_id)
        half_life = self.updater.half_life_ms
        return ItemState.from_dict(stored, half_life) if stored is not None else ItemState.new(half_life)
