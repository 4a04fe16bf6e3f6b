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
from typing import Any, cast

import faust
from faust import Stream
from faust.types import EventT, StreamT
from prometheus_client import Counter

from online_learning.join import CLICK_WEIGHT, PURCHASE_WEIGHT, Example, JoinState
from online_learning.learner import Learner
from online_learning.settings import LearningSettings
from streams.events import Click, EventKind, Impression, Purchase, Rejection, decode
from streams.settings import StreamSettings
from streams.time_policy import arrival_ms, enforce

log = logging.getLogger(__name__)
RawEvent = EventT[bytes]
DeadLetter = Callable[[RawEvent, Rejection, str], Awaitable[None]]

EXAMPLES = Counter("streamrec_label_examples_total", "Labeled examples written by the join", ["label"])


class LabelJoin:
    """Registers the join agent, its expiry timer and the learner on a faust app."""

    def __init__(
        self, app: faust.App, settings: StreamSettings, learning: LearningSettings, dead_letter: DeadLetter
    ) -> None:
        self.settings = settings
        self.learning = learning
        self._dead_letter = dead_letter
        self._window_ms = int(learning.attribution_window_s * 1000)
        self._time_policy = settings.time_policy()
        # JSON codec, no value_type: see the profiles table in streams/worker.py.
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
        async for events in cast(Stream[bytes], stream).take_events(
            self.settings.batch_max_events, self.settings.batch_max_wait_s
        ):
            examples: list[tuple[str, Example]] = []
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
                    examples += [(result.user_id, ex) for ex in self._apply(result, event.message.partition)]
            await self._emit(examples)
            yield None

    def _apply(self, event: Impression | Click | Purchase, partition: int) -> list[Example]:
        now_ms = int(time.time() * 1000)
        state = JoinState(self.state.get(event.user_id), self._window_ms)
        if isinstance(event, Impression):
            items = [item.model_dump() for item in event.items]
            examples = state.add_impression(event.event_id, event.ts, items, now_ms)
        else:
            request_id = event.request_id if isinstance(event, Click) else None
            weight = CLICK_WEIGHT if isinstance(event, Click) else PURCHASE_WEIGHT
            examples = state.add_label(request_id, event.product_id, weight, event.ts, now_ms)
        self._save(event.user_id, state, partition)
        return examples

    def _save(self, user_id: str, state: JoinState, partition: int) -> None:
        # As with profiles: name the partition, faust's implicit one is wrong in batches.
        state.data["partition"] = partition
        self.state.data[user_id] = state.data
        self.state.send_changelog(partition, user_id, state.data)

    async def close_expired(self) -> None:
        """Turn unlabeled items of impressions whose window closed into negatives."""
        now_ms = int(time.time() * 1000)
        examples: list[tuple[str, Example]] = []
        for user_id, data in list(self.state.data.items()):
            state = JoinState(data, self._window_ms)
            deadline = state.next_deadline()
            if deadline is None or deadline > now_ms:
                continue
            examples += [(user_id, ex) for ex in state.close_expired(now_ms)]
            self._save(user_id, state, int(data.get("partition", 0)))
        await self._emit(examples)

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
