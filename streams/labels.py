"""The label-join agent and the learner task of a stream worker.

Impressions, clicks and purchases are all keyed by user, so one agent joins
them per user in a changelogged table and writes labeled examples to the
single-partition examples topic, which one learner consumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import faust
from faust.types import EventT, StreamT
from prometheus_client import Counter

from online_learning.join import CLICK_WEIGHT, PURCHASE_WEIGHT, Example, JoinState
from online_learning.learner import Learner
from online_learning.settings import LearningSettings
from streamrec import failpoints
from streams import changelog
from streams.batching import RangeReader, run_batches
from streams.contain import apply_contained
from streams.events import Click, EventKind, Impression, Purchase, Rejection, decode
from streams.settings import StreamSettings
from streams.time_policy import arrival_ms, enforce

log = logging.getLogger(__name__)
RawEvent = EventT[bytes]
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
    ) -> None:
        self.settings = settings
        self._app = app
        self._refetch = refetch
        self.learning = learning
        self._dead_letter = dead_letter
        self._window_ms = int(learning.attribution_window_s * 1000)
        self._time_policy = settings.time_policy()
        # JSON codec, no value_type: see the profiles table in streams/worker.py.
        self._lock = asyncio.Lock()
        self.state = app.Table("label-join", default=None, partitions=settings.topic_partitions)
        self.examples = app.topic(learning.topic_examples, key_serializer="raw", value_serializer="raw", partitions=1)
        self._kinds: dict[str, EventKind] = {
            settings.topic_impressions: "impressions",
            settings.topic_clicks: "clicks",
            settings.topic_purchases: "purchases",
        }
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

    async def _batch(self, events: list[RawEvent]) -> None:
        accepted: list[tuple[RawEvent, Impression | Click | Purchase]] = []
        now_s = time.time()
        for event in events:
            kind = self._kinds[event.message.topic]
            result = decode(kind, event.value, self.settings.max_event_bytes)
            if not isinstance(result, Rejection):
                arrival = arrival_ms(event.message.timestamp, now_s)
                # Counted once, by the behavior agent that reads the same clicks.
                result = enforce(result, event.value or b"", arrival, self._time_policy, count=False)
            if isinstance(result, Rejection):
                # Clicks and purchases are dead-lettered by the behavior
                # agent; only impressions are this agent's alone.
                if kind == "impressions":
                    await self._dead_letter(event, result, "labels")
                continue
            if isinstance(result, Impression | Click | Purchase):
                accepted.append((event, result))
        await apply_contained("labels", accepted, self.apply, self._dead_letter)

    async def apply(self, batch: Sequence[tuple[RawEvent, Impression | Click | Purchase]]) -> None:
        """Join a batch; state is saved only once its examples are written, so a failed batch changes nothing."""
        async with self._lock:  # one writer at a time: this and the expiry timer
            await self._apply_batch(batch)

    async def _apply_batch(self, batch: Sequence[tuple[RawEvent, Impression | Click | Purchase]]) -> None:
        now_ms = int(time.time() * 1000)
        states: dict[str, tuple[JoinState, int]] = {}
        examples: list[tuple[str, Example]] = []
        for source, event in batch:
            failpoints.check("labels.event", event.event_id)
            state = states[event.user_id][0] if event.user_id in states else self._load(event.user_id)
            states[event.user_id] = (state, source.message.partition)
            examples += [(event.user_id, example) for example in self._apply(state, event, now_ms)]
        await self._emit(examples)
        await self._save([(user_id, state, partition) for user_id, (state, partition) in states.items()])

    def _load(self, user_id: str) -> JoinState:
        # A deep copy (through JSON) so changes stay off the table until saved.
        stored = self.state.get(user_id)
        return JoinState(json.loads(json.dumps(stored)) if stored is not None else None, self._window_ms)

    @staticmethod
    def _apply(state: JoinState, event: Impression | Click | Purchase, now_ms: int) -> list[Example]:
        return join_event(state, event, now_ms)

    async def _save(self, states: Sequence[tuple[str, JoinState, int]]) -> None:
        # As with profiles: name the partition, faust's implicit one is wrong in batches.
        for _, state, partition in states:
            state.data["partition"] = partition
        await changelog.write(self.state, [(partition, user_id, state.data) for user_id, state, partition in states])

    async def close_expired(self) -> None:
        """Turn unlabeled items of impressions whose window closed into negatives.

        Only states of partitions this worker owns, and not while partitions
        move: the memory store keeps stale copies of revoked partitions.
        """
        app = self._app
        if app.rebalancing or app.in_recovery:
            return
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic in self._kinds}
        async with self._lock:
            now_ms = int(time.time() * 1000)
            examples: list[tuple[str, Example]] = []
            closed: list[tuple[str, JoinState, int]] = []
            for user_id, data in list(self.state.data.items()):
                if int(data.get("partition", 0)) not in owned:
                    continue
                if (deadline := JoinState(data, self._window_ms).next_deadline()) is None or deadline > now_ms:
                    continue
                state = self._load(user_id)
                examples += [(user_id, ex) for ex in state.close_expired(now_ms)]
                closed.append((user_id, state, int(data.get("partition", 0))))
            await self._emit(examples)
            await self._save(closed)

    async def _emit(self, examples: Sequence[tuple[str, Example]]) -> None:
        futures = [
            await self.examples.send(
                key=user_id.encode(), value=json.dumps(example.to_dict()).encode(), partition=0, force=True
            )
            for user_id, example in examples
        ]
        if futures:
            await asyncio.gather(*futures)
        for _, example in examples:
            EXAMPLES.labels("positive" if example.label else "negative").inc()
