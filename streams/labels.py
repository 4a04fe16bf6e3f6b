"""The label join and the learner task of a stream worker.

Impressions, clicks and purchases are all keyed by user, so they are joined
per user in a changelogged table, and labeled examples go to the
single-partition examples topic, which one learner consumes. This module's
agent reads the impressions; the behavior agent hands over the clicks and
purchases it reads (:meth:`LabelJoin.join`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import StreamT, TableT, TopicT
from prometheus_client import Counter

from online_learning.join import CLICK_WEIGHT, PURCHASE_WEIGHT, Example, JoinState
from online_learning.learner import Learner
from online_learning.settings import LearningSettings
from streamrec import failpoints
from streams import changelog
from streams.batching import RangeReader, run_batches
from streams.contain import apply_contained
from streams.deadlines import Deadlines
from streams.events import Click, EventKind, Impression, Purchase, Rejection, decode
from streams.intake import RawEvent
from streams.retry import with_retries
from streams.settings import StreamSettings
from streams.time_policy import arrival_ms, enforce

log = logging.getLogger(__name__)
DeadLetter = Callable[[RawEvent, Rejection, str], Awaitable[None]]

EXAMPLES = Counter("streamrec_label_examples_total", "Labeled examples written by the join", ["label"])


def join_event(state: JoinState, event: Impression | Click | Purchase, now_ms: int) -> list[Example]:
    """Apply one impression, click or purchase to its shopper's join state; the examples it completes."""
    if isinstance(event, Impression):
        items = [item.model_dump() for item in event.items]
        return state.add_impression(event.event_id, event.ts, items, now_ms)
    request_id = event.request_id if isinstance(event, Click) else None
    weight = CLICK_WEIGHT if isinstance(event, Click) else PURCHASE_WEIGHT
    return state.add_label(request_id, event.product_id, weight, event.ts, now_ms)


@dataclass(frozen=True, slots=True)
class JoinedBatch:
    """What a batch did: the examples it completed and the states it changed (with their partitions)."""

    examples: list[tuple[str, Example]]
    changed: list[tuple[str, JoinState, int]]


def join_batch(
    events: Sequence[tuple[int, Impression | Click | Purchase]], load: Callable[[str], JoinState], now_ms: int
) -> JoinedBatch:
    """Join ``(partition, event)`` pairs in order against states from ``load``; keep only the states that changed.

    A click or purchase with nothing to join (no open impression shows the
    product, no request id to wait for) leaves its shopper's state as it was,
    so it is not written: no changelog record, and no record at all for a
    shopper who never had an impression or a waiting label.

    >>> from streams.events import Click
    >>> click = Click(event_id="e1", ts=1, schema_version=1, user_id="u", product_id="p")
    >>> joined = join_batch([(0, click)], lambda _: JoinState(None, 1000), now_ms=1)
    >>> (joined.examples, joined.changed)
    ([], [])
    """
    states: dict[str, tuple[JoinState, int]] = {}
    examples: list[tuple[str, Example]] = []
    for partition, event in events:
        state = states[event.user_id][0] if event.user_id in states else load(event.user_id)
        states[event.user_id] = (state, partition)
        examples += [(event.user_id, example) for example in join_event(state, event, now_ms)]
    changed = [(user_id, state, partition) for user_id, (state, partition) in states.items() if state.changed]
    return JoinedBatch(examples, changed)


def owned_partitions(app: faust.App, topics: Collection[str]) -> set[int]:
    """Partitions of ``topics`` assigned to this worker."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic in topics}


class LabelJoin:
    """Registers the join agent, its expiry timer and the learner on a faust app."""

    def __init__(
        self,
        app: faust.App,
        settings: StreamSettings,
        learning: LearningSettings,
        dead_letter: DeadLetter,
        *,
        refetch: RangeReader | None = None,
        clock: Callable[[], float] = time.time,
        table: TableT[Any, Any] | None = None,
        examples: TopicT | None = None,
    ) -> None:
        """``table`` and ``examples`` replace the join's table and examples topic (tests inject fakes)."""
        self.settings = settings
        self._app = app
        self._refetch = refetch
        self.learning = learning
        self._dead_letter = dead_letter
        self._clock = clock
        self._window_ms = int(learning.attribution_window_s * 1000)
        self._time_policy = settings.time_policy()
        # JSON codec, no value_type: see the profiles table in streams/worker.py.
        self._lock = asyncio.Lock()
        self.state = (
            table
            if table is not None
            else app.Table(
                "label-join",
                default=None,
                partitions=settings.topic_partitions,
                extra_topic_configs=changelog.TOPIC_CONFIG,
            )
        )
        # When each shopper's earliest open impression closes, so the expiry
        # timer reads only the states that are due.
        self.deadlines = Deadlines()
        self.state.on_recover(self.rebuild_deadlines)
        self.examples = (
            examples
            if examples is not None
            else app.topic(learning.topic_examples, key_serializer="raw", value_serializer="raw", partitions=1)
        )
        # Impressions only: clicks and purchases come from the behavior agent,
        # which reads them anyway (see :meth:`join`).
        self._kinds: dict[str, EventKind] = {settings.topic_impressions: "impressions"}
        source = app.topic(*self._kinds, key_serializer="raw", value_serializer="raw")
        app.agent(source, name="labels")(self._agent)
        app.timer(learning.join_tick_s, name="labels.close_expired")(self.close_expired)
        self.learner = Learner(learning, settings.connection(), settings.topic_model, f"{settings.app_id}-learner")
        app.task(self.learner.run)

    async def _agent(self, stream: StreamT[Any]) -> AsyncIterator[None]:
        settings = self.settings
        async for _ in run_batches(
            stream,
            settings.batch_max_events,
            settings.batch_max_wait_s,
            self._batch,
            reader=self._refetch,
        ):
            yield None

    async def _batch(self, events: Sequence[RawEvent]) -> None:
        accepted: list[tuple[RawEvent, Impression | Click | Purchase]] = []
        now_s = self._clock()
        for event in events:
            kind = self._kinds[event.message.topic]
            result = decode(kind, event.value, self.settings.max_event_bytes)
            if not isinstance(result, Rejection):
                arrival = arrival_ms(event.message.timestamp, now_s)
                result = enforce(result, event.value or b"", arrival, self._time_policy)
            if isinstance(result, Rejection):
                await self._dead_letter(event, result, "labels")
            elif isinstance(result, Impression):
                accepted.append((event, result))
        await self.join(accepted)

    async def join(self, batch: Sequence[tuple[RawEvent, Impression | Click | Purchase]]) -> None:
        """Join decoded impressions, clicks and purchases; an event that keeps failing is dead-lettered.

        The behavior agent hands its clicks and purchases here, so each is
        read and decoded once: a second stream over the same topics doubled
        faust's cost per event, and two streams' copies of one re-read
        offset each counted it done (the first to finish let the commit pass
        an offset the other had not applied).
        """
        await apply_contained("labels", batch, self.apply, self._dead_letter)

    async def apply(self, batch: Sequence[tuple[RawEvent, Impression | Click | Purchase]]) -> None:
        """Join a batch; state is saved only once its examples are written, so a failed batch changes nothing."""
        async with self._lock:  # one writer at a time: this and the expiry timer
            for _, event in batch:
                failpoints.check("labels.event", event.event_id)
            now_ms = int(self._clock() * 1000)
            joined = join_batch([(source.message.partition, event) for source, event in batch], self._load, now_ms)
            await self._emit(joined.examples)
            await self._save(joined.changed)

    def _load(self, user_id: str) -> JoinState:
        return self._copy(self.state.get(user_id))

    def _copy(self, stored: dict[str, Any] | None) -> JoinState:
        # A deep copy (through JSON) so changes stay off the table until saved.
        return JoinState(json.loads(json.dumps(stored)) if stored is not None else None, self._window_ms)

    async def _save(self, states: Sequence[tuple[str, JoinState, int]]) -> None:
        # As with profiles: name the partition, faust's implicit one is wrong in batches.
        for _, state, partition in states:
            state.data["partition"] = partition
        await changelog.write(self.state, [(partition, user_id, state.data) for user_id, state, partition in states])
        for user_id, state, partition in states:
            self.deadlines.set(user_id, partition, state.next_deadline())

    async def rebuild_deadlines(self) -> None:
        """Index every stored state's next deadline (faust calls this after each recovery of the table)."""
        self.deadlines.rebuild(
            (str(user_id), int(data.get("partition", 0)), JoinState(data, self._window_ms).next_deadline())
            for user_id, data in self.state.data.items()
            if data is not None
        )
        log.info("label join: %d shoppers with open impressions after recovery", len(self.deadlines))

    async def close_expired(self) -> None:
        """Turn unlabeled items of impressions whose window closed into negatives (the timer).

        Only states of partitions this worker owns, and not while partitions
        move: the memory store keeps stale copies of revoked partitions.
        """
        app = self._app
        if app.rebalancing or app.in_recovery:
            return
        try:
            await self.close_due(owned_partitions(app, self._kinds))
        except Exception as exc:  # a timer that raises stops for good; nothing was saved, the next tick retries
            log.error("label expiry failed, retrying on the next tick: %r", exc, exc_info=exc)

    async def close_due(self, partitions: Collection[int]) -> int:
        """Close the due impressions of shoppers in ``partitions``; returns how many states were saved.

        With nothing due this reads no state: the deadlines index answers.
        """
        async with self._lock:
            now_ms = int(self._clock() * 1000)
            due = self.deadlines.due(partitions, now_ms)
            if not due:
                return 0
            examples: list[tuple[str, Example]] = []
            closed: list[tuple[str, JoinState, int]] = []
            for user_id in due:
                stored = self.state.get(user_id)
                partition = int(stored.get("partition", 0)) if stored is not None else 0
                state = self._copy(stored)
                examples += [(user_id, ex) for ex in state.close_expired(now_ms)]
                if state.changed:
                    closed.append((user_id, state, partition))
                else:  # gone or not due after all (a stale index): index what is stored
                    self.deadlines.set(user_id, partition, state.next_deadline())
            await self._emit(examples)
            await self._save(closed)
            return len(closed)

    async def _emit(self, examples: Sequence[tuple[str, Example]]) -> None:
        if not examples:
            return
        records = [(user_id.encode(), json.dumps(example.to_dict()).encode()) for user_id, example in examples]

        async def send_all() -> None:
            # force=True: sent now, not when faust acknowledges the current event.
            futures = [await self.examples.send(key=k, value=v, partition=0, force=True) for k, v in records]
            await changelog.all_acked(futures)

        # A broker blink is waited out; a resend after a lost ack repeats
        # examples, which the learner skips by example id.
        await with_retries(f"examples to {self.learning.topic_examples}", send_all)
        for _, example in examples:
            EXAMPLES.labels("positive" if example.label else "negative").inc()
