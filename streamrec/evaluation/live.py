"""``streamrec evaluate --via-kafka``: the same replay through a real broker, worker and API.

Each event is produced to its Kafka topic as any outside producer would,
and the replay waits until the live system has applied it (the shopper's
served profile counts it, and the item agent has updated every product it
touched) before asking for the next list over HTTP. The lists come from the
API as deployed, ranked with the fixed blend: the learned model there
follows the learner's wall-clock snapshots, which a replay at its own pace
cannot reproduce, so the comparable in-process row is ``streamrec-blend``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamrec.evaluation.data import Dataset, Interaction
from streamrec.evaluation.replay import catalog_event
from streamrec.launcher import AllInOne, ApiClient, Publisher, wait_for
from streamrec.localkafka import LocalKafka, free_port
from streams.covisitation import HISTORY
from streams.profiles import RECENT_ITEMS
from streams.settings import StreamSettings

METHOD = "streamrec-blend"
# How long one event may take to show in the live system; far above the
# tens of milliseconds it takes, so only a stuck system trips it.
APPLY_TIMEOUT_S = 60.0
LIVE_ENV = {
    # MovieLens is from 1997-98: keep its event times instead of clamping them.
    "STREAMREC_OLDEST_EVENT_TS": "1990-01-01T00:00:00Z",
    # Rank with the fixed blend throughout (see the module docstring).
    "STREAMREC_MIN_EXAMPLES_TO_SERVE": str(10**12),
}


def event_body(index: int, event: Interaction) -> dict[str, object]:
    """The contract JSON of a replayed click or purchase (the in-process replay uses the same ids)."""
    return {
        "event_id": f"e{index}",
        "ts": event.ts_ms,
        "schema_version": 1,
        "user_id": event.user_id,
        "product_id": event.item_id,
    }


class LiveStreamrec:
    """streamrec as deployed, behind Kafka and its HTTP API."""

    def __init__(self, api: ApiClient, publisher: Publisher) -> None:
        self.api = api
        self.publisher = publisher
        self._events: dict[str, int] = {}
        self._recent: dict[str, list[str]] = {}  # the shopper's recent products, as the profile keeps them

    async def load_catalog(self, dataset: Dataset) -> None:
        """Publish every product and wait until all are embedded and searchable."""
        first_ts = dataset.interactions[0].ts_ms if dataset.interactions else 0
        products = [
            ("product", catalog_event(n, item, first_ts).model_dump(exclude_defaults=False))
            for n, item in enumerate(dataset.catalog.values())
        ]
        self.publisher.send_all(products)
        total = len(products)
        wait_for(lambda: int((self.api.ready() or {}).get("products", 0)) >= total, timeout_s=60 + total * 0.1)

    async def recommend(self, method: str, user_id: str, k: int, exclude: frozenset[str], at_ms: int) -> list[str]:
        """The API's top ``k`` for the shopper now (the live ranker reads its own clock)."""
        body = self.api.json("/v1/recommendations", user_id=user_id, k=k, exclude=",".join(sorted(exclude)))
        return [str(item["product_id"]) for item in body["items"]]

    async def apply(self, index: int, event: Interaction) -> None:
        """Produce the event and wait until the profile and every product it touches reflect it."""
        recent = self._recent.setdefault(event.user_id, [])
        history = [item for item in dict.fromkeys(reversed(recent[-HISTORY:])) if item != event.item_id]
        updates = self.api.counter("streamrec_item_updates_total")
        kind = "purchase" if event.kind == "purchase" else "click"
        self.publisher.send_all([(kind, event_body(index, event))])
        expected = self._events.get(event.user_id, 0) + 1
        wait_for(lambda: self.api.profile_events(event.user_id) >= expected, APPLY_TIMEOUT_S, interval_s=0.01)
        # The event's product and each recent product it pairs with are
        # updated by the item agent, each once (one writer per product).
        touched = 1 + len(history)
        wait_for(
            lambda: self.api.counter("streamrec_item_updates_total") >= updates + touched,
            APPLY_TIMEOUT_S,
            interval_s=0.01,
        )
        self._events[event.user_id] = expected
        self._recent[event.user_id] = [*(i for i in recent if i != event.item_id), event.item_id][-RECENT_ITEMS:]

    def model_version(self) -> int:
        """Always 0: the live API ranks with the fixed blend here."""
        return 0

    def examples_learned(self) -> int:
        """Examples the live learner learned (it learns, though the API does not rank with it here)."""
        return int(self.api.counter("streamrec_model_examples_total"))


@contextmanager
def live_system(state_dir: Path | None = None, log: Path | None = None) -> Iterator[LiveStreamrec]:
    """A local broker and ``streamrec all-in-one`` on fresh state, stopped on exit."""
    owned = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="streamrec-evaluate-")) if state_dir is None else state_dir
    kafka = LocalKafka(data_dir=root / "kafka", port=free_port(), controller_port=free_port())
    kafka.start()
    system: AllInOne | None = None
    publisher: Publisher | None = None
    try:
        env = {
            **LIVE_ENV,
            "STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "STREAMREC_MILVUS_URI": str((root / "milvus.db").resolve()),
            "STREAMREC_DATA_DIR": str((root / "worker").resolve()),
            "STREAMREC_WORKER_WEB_PORT": str(free_port()),
        }
        system = AllInOne(env, log or root / "streamrec.log", free_port())
        system.start()
        publisher = Publisher(StreamSettings(kafka_bootstrap=kafka.bootstrap_servers))
        yield LiveStreamrec(system.api, publisher)
    finally:
        if publisher is not None:
            publisher.close()
        if system is not None:
            system.stop()
        kafka.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)
