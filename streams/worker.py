"""The Faust application: catalog and behavior agents over raw Kafka bytes.

Agents subscribe to raw bytes and decode in our code, so a bad message is
dead-lettered (and the dead-letter write acknowledged) before faust
acknowledges it. Events are taken in batches: one encoder call, one product
lookup and one Milvus upsert serve hundreds of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import faust
from faust.types import StreamT
from prometheus_client import Counter, Histogram

from encoders.runner import Embedder
from online_learning.settings import LearningSettings
from ranker.store import ProductRow, VectorStore
from streamrec import failpoints
from streams import changelog, faust_adapter, sensors, table_store
from streams.batching import RangeReader, run_batches
from streams.contain import apply_contained
from streams.events import Click, ProductDelete, ProductUpsert, Purchase, Rejection, UserEvent, decode
from streams.hot_profiles import HotProfiles
from streams.intake import Intake, RawEvent
from streams.items import ItemAgent
from streams.labels import LabelJoin
from streams.lag import LagProbe
from streams.parking import UNKNOWN_PRODUCT, ParkedEvent, Parking
from streams.pipeline import Pipeline
from streams.product_cache import ProductCache
from streams.profiles import UserProfile
from streams.retry import with_retries
from streams.settings import StreamSettings
from streams.time_policy import arrival_ms, enforce
from streams.updater import BehaviorUpdater, Folded

log = logging.getLogger(__name__)

EVENTS = Counter("streamrec_events_total", "Events handled", ["agent", "topic", "outcome"])
DEAD_LETTERS = Counter("streamrec_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"])
SERVING_WRITE_FAILURES = Counter(
    "streamrec_serving_write_failures_total",
    "Serving writes (user rows, item deltas) that failed for good; the profiles are saved, the rows stale until then",
)
BATCH_SECONDS = Histogram(
    "streamrec_batch_seconds",
    "Time to process one batch of events",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

PHASE_SECONDS = Histogram(
    "streamrec_behavior_phase_seconds",
    "Time a behavior batch spent in each phase (lock: waiting for the parked-retry timer)",
    ["phase"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        PHASE_SECONDS.labels(name).observe(time.perf_counter() - started)


def _header(value: object) -> bytes:
    return str(value).encode("utf-8", "replace")


# Parked events retried per timer tick (oldest first).
PARK_RETRY_BATCH = 500

# How long a stopping worker waits for its in-flight batches before faust's
# own shutdown goes on (well inside Kubernetes' 30 s default grace period).
DRAIN_TIMEOUT_S = 20.0
# How long a rebalance waits for the behavior batch being handled, so its
# offsets are committed before its partitions move (faust's own wait for its
# streams comes first; both stay well inside the session timeout).
REVOKE_WAIT_S = 10.0


class WorkerApp(faust.App):
    """A faust app whose stop first lets the agents finish and commit every event already fetched.

    faust's own stop tells the consumer to stop before it waits for the
    streams, and then does not wait: events handled after its last commit
    would come again after a restart. Here fetching stops first, the agents
    work off what they hold, and the consumer commits once all of it is
    acknowledged (or ``DRAIN_TIMEOUT_S`` passed).
    """

    intakes: list[Intake]

    async def on_first_start(self) -> None:
        """Stop at once, naming them, if the installed faust lacks the private attributes streamrec relies on."""
        faust_adapter.check(self)
        for intake in self.intakes:
            intake.install()
        await super().on_first_start()

    async def on_stop(self) -> None:
        """Drain, then faust's own stop."""
        try:
            await faust_adapter.stop_fetcher(self)
            for intake in self.intakes:
                if not await intake.drained(DRAIN_TIMEOUT_S):
                    log.warning("stopping: %d fetched behavior records not handled; they come again", intake.buffered)
            await asyncio.wait_for(self.consumer.wait_empty(), DRAIN_TIMEOUT_S)
        except Exception as exc:  # never block the stop itself; uncommitted events come again
            log.warning("stopping: in-flight events not all committed: %r", exc)
        await super().on_stop()


class StreamWorker:
    """Builds the faust app and holds what its agents need."""

    def __init__(
        self,
        settings: StreamSettings,
        store: VectorStore,
        encoder: Embedder,
        learning: LearningSettings | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self._half_life_ms = settings.profile_half_life_s * 1000
        self._dedup_ttl_ms = int(settings.dedup_ttl_s * 1000)
        self._time_policy = settings.time_policy()
        self._behavior_kinds = settings.behavior_topics()
        self.refetch = RangeReader(settings.connection().aiokafka(), group=settings.app_id)
        self.products = ProductCache(settings.product_cache_size, settings.product_cache_ttl_s)
        self.hot = HotProfiles(settings.profile_cache_size)
        # A batch's serving writes overlap the next batch (see streams.pipeline).
        self.pipeline = Pipeline(depth=2)
        self.updater = BehaviorUpdater(store, encoder, int(settings.late_after_s * 1000), products=self.products)
        self.app = WorkerApp(
            settings.app_id,
            **settings.connection().faust(),
            store=table_store.faust_store_url(settings.table_store),
            autodiscover=False,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=1,
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            datadir=settings.data_dir,
            tabledir=table_store.table_dir(settings.app_id),
            web_port=settings.worker_web_port,
            web_host="127.0.0.1",
            producer_acks=-1,
            # A busy shopper's changelog record is tens of KB, over aiokafka's
            # default 16 KB batch: each record went in a batch of its own, and
            # the sender takes one batch per partition per request, so saving
            # 200 profiles took 25 round trips (187 ms a batch, measured).
            # Batches stay under the broker's 1 MB message.max.bytes default.
            producer_max_batch_size=512 * 1024,
            producer_max_request_size=4 * 1024 * 1024,
            broker_session_timeout=settings.session_timeout_s,
            # Standbys double changelog reads on a single node for no gain;
            # production sets replicas > 1 through the chart.
            table_standby_replicas=0,
        )
        # No key_type/value_type: the JSON codec round-trips str keys and dict
        # values, while value_type=dict makes recovery call dict.from_data and
        # fail on every changelog record (a restarted worker never gets ready).
        self.profiles = self.app.Table(
            "profiles",
            default=None,
            partitions=settings.topic_partitions,
            extra_topic_configs=changelog.TOPIC_CONFIG,
        )
        self.parking = Parking(
            self.app.Table(
                "parked",
                default=None,
                partitions=settings.topic_partitions,
                extra_topic_configs=changelog.TOPIC_CONFIG,
            ),
            settings.park_max_events,
            int(settings.park_max_s * 1000),
            retry_ms=int(settings.park_retry_s * 1000),
        )
        # One writer of profiles at a time: the behavior agent and the timer
        # that applies parked events both load, change and save them.
        self._profiles_lock = asyncio.Lock()
        self.dlq = self.app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
        products = self.app.topic(settings.topic_products, key_serializer="raw", value_serializer="raw")
        behavior = self.app.topic(*settings.behavior_topics(), key_serializer="raw", value_serializer="raw")
        self.app.agent(products, name="catalog")(self._catalog_agent)
        # The behavior agent's topics are faust's to subscribe and assign (its
        # tables follow their partitions); their records reach the agent
        # through the intake, in bulk (see ``streams.intake``).
        self.intake = Intake(
            self.app,
            settings.behavior_topics(),
            capacity=4 * settings.batch_max_events,
            reader=self.refetch,
            committed=self.refetch.committed,
        )
        self.app.intakes = [self.intake]
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self.app.agent(behavior, name="behavior")(self._behavior_agent)
        self.items = ItemAgent(self.app, settings, store, self._dead_letter, refetch=self.refetch)
        self.labels = LabelJoin(
            self.app,
            settings,
            learning or LearningSettings(),
            self._dead_letter,
            refetch=self.refetch,
        )
        self.lag = LagProbe(settings.connection(), settings.app_id)
        self.app.timer(settings.lag_interval_s, name="consumer-lag")(self._measure_lag)
        self.app.timer(settings.park_retry_s, name="parked-retry")(self.retry_parked)
        sensors.install(self.app)

    async def _measure_lag(self) -> None:
        owned = [
            (tp.topic, tp.partition) for tp in self.app.consumer.assignment() if not tp.topic.endswith("-changelog")
        ]
        try:
            await self.lag.measure(owned)
        except Exception as exc:  # a failed probe must never disturb the stream
            log.warning("consumer lag not measured: %s", exc)

    async def _dead_letter(self, event: RawEvent, rejection: Rejection, agent: str) -> None:
        """Write the original bytes with the reason; wait for the broker's ack."""
        message = event.message
        key = message.key if isinstance(message.key, bytes) else None
        await self._dead_letter_record(
            rejection, agent, topic=message.topic, partition=message.partition, offset=message.offset, key=key
        )

    async def _dead_letter_record(
        self, rejection: Rejection, agent: str, *, topic: str, partition: int, offset: int, key: bytes | None
    ) -> None:
        headers = [
            ("reason", _header(rejection.reason)),
            ("detail", _header(rejection.detail[:1000])),
            ("source_topic", _header(topic)),
            ("source_partition", _header(partition)),
            ("source_offset", _header(offset)),
        ]

        async def send() -> None:
            # force=True: without it faust attaches the message to the current
            # event and sends it only when that event is acknowledged, which is
            # the opposite of the order we need (and would wait forever here).
            future = await self.dlq.send(key=key, value=rejection.raw, headers=headers, force=True)
            await future

        # A broker blink is waited out, never skipped: the event is
        # acknowledged only once its dead letter is written. (A resend after
        # a lost ack can write the same dead letter twice: at least once.)
        await with_retries(f"dead letter to {self.settings.topic_dlq}", send)
        DEAD_LETTERS.labels(rejection.reason).inc()
        EVENTS.labels(agent, topic, "dead_lettered").inc()
        log.warning(
            "dead-lettered %s/%s@%s: %s (%s)", topic, partition, offset, rejection.reason, rejection.detail[:200]
        )

    async def _decoded(
        self, events: Sequence[RawEvent], agent: str, kind_of: Callable[[RawEvent], Any]
    ) -> list[tuple[RawEvent, Any]]:
        accepted = []
        now_s = time.time()
        for event in events:
            result = decode(kind_of(event), event.value, self.settings.max_event_bytes)
            if not isinstance(result, Rejection):
                arrival = arrival_ms(event.message.timestamp, now_s)
                result = enforce(result, event.value or b"", arrival, self._time_policy)
            if isinstance(result, Rejection):
                await self._dead_letter(event, result, agent)
            else:
                accepted.append((event, result))
        return accepted

    async def _catalog_agent(self, stream: StreamT[Any]) -> AsyncIterator[None]:
        settings = self.settings
        async for _ in run_batches(
            stream,
            settings.product_batch_max,
            settings.product_batch_wait_s,
            self._catalog_batch,
            reader=self.refetch,
        ):
            yield None

    async def _catalog_batch(self, events: Sequence[RawEvent]) -> None:
        started = time.perf_counter()
        accepted = await self._decoded(events, "catalog", lambda _: "products")
        await apply_contained("catalog", accepted, self.apply_catalog, self._dead_letter)
        BATCH_SECONDS.labels("catalog").observe(time.perf_counter() - started)

    async def apply_catalog(self, batch: Sequence[tuple[RawEvent, Any]]) -> None:
        """Embed and upsert the newest state of each product in the batch."""
        newest: dict[str, ProductUpsert | ProductDelete] = {}
        for _, event in batch:
            failpoints.check("catalog.event", event.event_id)
            seen = newest.get(event.product_id)
            if seen is None or event.ts >= seen.ts:
                newest[event.product_id] = event
        upserts = [e for e in newest.values() if isinstance(e, ProductUpsert)]
        deletes = [e.product_id for e in newest.values() if isinstance(e, ProductDelete)]
        if upserts:
            vectors = await self.encoder.encode([e.text() for e in upserts], caller="worker")
            model = self.encoder.name
            rows = [
                ProductRow(e.product_id, v, e.title, e.category, e.brand, e.price, e.in_stock, e.ts, model)
                for e, v in zip(upserts, vectors, strict=True)
            ]
            await with_retries("upsert products", lambda: asyncio.to_thread(self.store.upsert_products, rows))
            self.products.put_many(rows)
        if deletes:
            await with_retries("delete products", lambda: asyncio.to_thread(self.store.delete_products, deletes))
            self.products.discard(deletes)
        EVENTS.labels("catalog", self.settings.topic_products, "processed").inc(len(batch))

    async def _behavior_agent(self, stream: StreamT[Any]) -> AsyncIterator[None]:
        del stream  # its records come through the intake
        settings = self.settings
        async for batch in self.intake.batches(settings.batch_max_events, settings.batch_max_wait_s):
            self.pipeline.check()
            await self.pipeline.room()
            task = asyncio.ensure_future(self._behavior_batch(batch.records))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await task  # finish the batch being handled and its serving writes, acknowledge it, then stop
                self.pipeline.then(functools.partial(self.intake.done, batch))
                await self.pipeline.drain()
                raise
            # Acknowledged once its serving writes are done, behind the batches before it.
            self.pipeline.then(functools.partial(self.intake.done, batch))
            yield None

    async def _on_partitions_revoked(self, sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Drop the behavior records not handed out yet; let the batch being handled finish and commit it."""
        del sender, args, signal, kwargs
        self.hot.clear()
        self.intake.clear()
        if not await self.intake.wait_idle(REVOKE_WAIT_S):
            log.warning("rebalance: a behavior batch was still being handled after %.0f s", REVOKE_WAIT_S)
        await self.app.consumer.commit()

    async def _behavior_batch(self, events: Sequence[RawEvent]) -> None:
        started = time.perf_counter()
        kinds = self._behavior_kinds
        with _phase("decode"):
            accepted = await self._decoded(events, "behavior", lambda e: kinds[e.message.topic])
        await apply_contained("behavior", accepted, self.apply_behavior, self._dead_letter)
        # The same clicks and purchases close impressions in the label join.
        with _phase("label_join"):
            await self.labels.join(
                [(source, event) for source, event in accepted if isinstance(event, Click | Purchase)]
            )
        BATCH_SECONDS.labels("behavior").observe(time.perf_counter() - started)

    async def apply_behavior(self, batch: Sequence[tuple[RawEvent, UserEvent]]) -> None:
        """Fold a batch of user events into profiles, save and publish them; park events of unknown products."""
        now_ms = int(time.time() * 1000)
        with _phase("lock"):
            await self._profiles_lock.acquire()
        try:
            folded = await self._fold_and_save(
                [(source.message.partition, event) for source, event in batch], pipelined=True
            )
            waiting = [
                ParkedEvent(
                    event,
                    batch[index][0].value or b"",
                    batch[index][0].message.key if isinstance(batch[index][0].message.key, bytes) else None,
                    batch[index][0].message.topic,
                    batch[index][0].message.partition,
                    batch[index][0].message.offset,
                    now_ms,
                )
                for index in folded.parked
                if isinstance(event := batch[index][1], Click | Purchase)
            ]
            overflow = await self.parking.park(waiting)
        finally:
            self._profiles_lock.release()
        for parked in overflow:
            detail = f"product {parked.event.product_id} is not embedded and parking is full"
            await self._dead_letter_parked(parked, f"{detail} ({self.parking.max_events} events)")
        full = {(p.topic, p.partition, p.offset) for p in overflow}
        for index, (source, _) in enumerate(batch):
            message = source.message
            if (message.topic, message.partition, message.offset) not in full:
                EVENTS.labels("behavior", message.topic, folded.outcome(index)).inc()

    async def _fold_and_save(self, items: Sequence[tuple[int, UserEvent]], *, pipelined: bool = False) -> Folded:
        """Apply ``(partition, event)`` pairs; save changed profiles to the changelog, then publish them.

        ``pipelined``: the serving writes are queued on :attr:`pipeline`
        instead of awaited (the changelog write is always awaited).
        """
        try:
            with _phase("fold"):
                folded = await self.updater.fold([event for _, event in items], self._load)
            # The changelog records go to each source event's partition explicitly:
            # inside a batch faust's "current event" is not the one that changed
            # the key. Saved before the serving rows are written; a crash between
            # the two is healed by the replay (see ``Folded.replayed``).
            with _phase("changelog"):
                await changelog.write(
                    self.profiles,
                    [
                        (items[index][0], user_id, profile.to_dict())
                        for user_id, (profile, index) in folded.profiles.items()
                    ],
                )
        except BaseException:
            self.hot.discard({event.user_id for _, event in items})  # changed in place, never saved
            raise
        self.hot.keep(profile for profile, _ in folded.profiles.values())
        upsert = self.updater.publication(
            [profile for profile, _ in folded.profiles.values()], list(folded.replayed.values())
        )
        deltas = folded.items

        async def serve() -> None:
            try:
                with _phase("publish"):
                    await upsert()
                with _phase("item_deltas"):
                    await self.items.send(deltas)
            except Exception as exc:  # retriable errors were waited out; the profiles are saved
                SERVING_WRITE_FAILURES.inc()
                log.error("serving rows of %d shoppers not written: %r", len(folded.profiles), exc, exc_info=exc)

        # Serving writes go through the pipeline either way, so they reach the
        # store in the order the profiles were saved.
        self.pipeline.submit(serve)
        if not pipelined:
            await self.pipeline.drain()
        return folded

    async def retry_parked(self) -> None:
        """Apply parked events whose product has arrived; dead-letter those that waited too long."""
        if self.app.rebalancing or self.app.in_recovery:
            return  # partitions are moving: the tables are not this worker's to change now
        kinds = self._behavior_kinds
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic in kinds}
        async with self._profiles_lock:
            # Only the events due for a retry: with none due, no table value is read.
            waiting = self.parking.due(owned, int(time.time() * 1000), PARK_RETRY_BATCH)
            if not waiting:
                return
            try:
                folded = await self._fold_and_save([(parked.partition, parked.event) for parked in waiting])
            except Exception as exc:  # tried again on the next tick
                log.warning("parked events not retried: %r", exc)
                return
            now_ms = int(time.time() * 1000)
            still = set(folded.parked)
            done = [parked for index, parked in enumerate(waiting) if index not in still]
            expired = [waiting[index] for index in folded.parked if self.parking.expired(waiting[index], now_ms)]
            self.parking.postpone(
                [waiting[index] for index in folded.parked if not self.parking.expired(waiting[index], now_ms)],
                now_ms,
            )
            for parked in expired:
                age_s = (now_ms - parked.parked_ms) / 1000
                await self._dead_letter_parked(
                    parked, f"product {parked.event.product_id} was not embedded within {age_s:.0f} s"
                )
            await self.parking.release(done, "applied")
            await self.parking.release(expired, "expired")
        for index, parked in enumerate(waiting):
            if index not in still:
                EVENTS.labels("behavior", parked.topic, folded.outcome(index)).inc()

    async def _dead_letter_parked(self, parked: ParkedEvent, detail: str) -> None:
        rejection = Rejection(UNKNOWN_PRODUCT, detail, parked.raw)
        await self._dead_letter_record(
            rejection, "behavior", topic=parked.topic, partition=parked.partition, offset=parked.offset, key=parked.key
        )

    def _load(self, user_id: str) -> UserProfile:
        hot = self.hot.get(user_id)
        if hot is not None:
            return hot
        stored = self.profiles.get(user_id)
        if stored is None:
            return UserProfile(user_id, self._half_life_ms, dedup_ttl_ms=self._dedup_ttl_ms)
        return UserProfile.from_dict(stored, self._half_life_ms, self._dedup_ttl_ms)
