"""Soak: two workers killed with SIGKILL 20 times at random moments while shoppers' numbered events flow.

The oracle looks from outside. Each shopper's events are numbered and go to
one topic (clicks, purchases or searches), so the shopper's partition orders
them. Afterwards, per partition of that topic, the newest record of each
shopper in the profiles changelog (the state a restarted worker recovers)
must remember exactly the ids sent as applied, and count each once; that
state and the profile the API serves must equal what one clean pass over the
same events gives (the worker's own ``BehaviorUpdater`` run here, in memory);
and the group must commit to the end of every input topic within
``COMMIT_BOUND_S`` after the producer stops.

The kill moments come from a seed, printed at the start (pytest shows it with
a failure) and in every assertion: ``STREAMREC_SOAK_SEED=<seed>`` draws the
same moments again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from encoders.registry import load_model
from encoders.runner import AsyncEncoder
from encoders.settings import EncoderSettings, ModelSpec
from ranker.store import MemoryStore, ProductRow
from streamrec.launcher import AllInOne, Publisher, wait_committed, wait_for
from streamrec.localkafka import LocalKafka, free_port
from streamrec.sample_data import QUERIES, catalog
from streams.events import Click, EventKind, ProductUpsert, Purchase, Search, UserEvent, decode
from streams.profiles import SEEN_EVENTS, UserProfile, decode_vector, event_key
from streams.settings import StreamSettings
from streams.topics import ensure_topics
from streams.updater import BehaviorUpdater

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

CYCLES = 20
KILL_GAP_S = (1.0, 8.0)  # between one kill and the next, drawn from the seed
COMMIT_BOUND_S = 30.0  # after the producer stops, every input topic is committed to its end within this
SHOPPERS = 120
PRODUCTS = 60
# The hashing encoder: the transformer is not what is under test, and a worker
# that loads in seconds is killed at work more often than while it starts.
ENCODER = "soak-hashing"
ENCODER_MODELS = {ENCODER: ModelSpec(loader="hashing", source="32")}
# Most shoppers click; some only buy, some only search: each shopper's events
# stay on one topic, so their order is the partition's order.
KIND_OF_SHOPPER = ("click",) * 7 + ("purchase", "search", "search")
DECODE_KIND: dict[str, EventKind] = {"click": "clicks", "purchase": "purchases", "search": "searches"}


@dataclass
class Shoppers:
    """Numbered events for shoppers, sent from a thread in random order (seeded) until stopped."""

    publisher: Publisher
    products: list[str]
    seed: int
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    sent: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sent = {f"soak-{self.run}-{n:03d}": [] for n in range(SHOPPERS)}
        self.kinds = {user: KIND_OF_SHOPPER[n % len(KIND_OF_SHOPPER)] for n, user in enumerate(self.sent)}

    def event(self, user: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
        """The shopper's next event: its id carries the shopper's sequence number."""
        kind = self.kinds[user]
        body: dict[str, Any] = {
            "event_id": f"{user}-{len(self.sent[user]):04d}",
            "ts": int(time.time() * 1000),
            "schema_version": 1,
            "user_id": user,
        }
        if kind == "search":
            body["query"] = rng.choice(sorted(QUERIES.values()))
        else:
            body["product_id"] = rng.choice(self.products)
        if kind == "purchase":
            body["quantity"] = rng.randint(1, 3)
        return kind, body

    def start(self, per_round: int = 8, interval_s: float = 0.1) -> None:
        """Send ``per_round`` events of random shoppers every ``interval_s`` until :meth:`stop`."""
        rng = random.Random(self.seed + 1)
        # A shopper stops short of what a profile remembers of its applied ids,
        # so the oracle sees the whole set.
        cap = SEEN_EVENTS - 12

        def produce() -> None:
            while not self._stop.is_set():
                for user in rng.sample(sorted(self.sent), per_round):
                    if len(self.sent[user]) < cap:
                        kind, body = self.event(user, rng)
                        self.publisher.send(kind, body)
                        self.sent[user].append((kind, body))
                self.publisher.flush()
                time.sleep(interval_s)

        self._thread = threading.Thread(target=produce, name="soak-producer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait until the broker has every event sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.publisher.flush()

    @property
    def total(self) -> int:
        """Events sent so far."""
        return sum(len(events) for events in self.sent.values())


def clean_run(
    shoppers: Shoppers, products: list[dict[str, Any]], settings: StreamSettings, encoder: AsyncEncoder
) -> dict[str, UserProfile]:
    """The profiles one fault-free pass over every event sent gives, with the worker's own updater."""

    async def fold() -> dict[str, UserProfile]:
        upserts = [decode("products", json.dumps(p).encode()) for p in products]
        assert all(isinstance(u, ProductUpsert) for u in upserts)
        rows = [u for u in upserts if isinstance(u, ProductUpsert)]
        vectors = await encoder.encode([u.text() for u in rows], caller="worker")
        store = MemoryStore()
        store.upsert_products(
            [
                ProductRow(u.product_id, v, u.title, u.category, u.brand, u.price, u.in_stock, u.ts, encoder.name)
                for u, v in zip(rows, vectors, strict=True)
            ]
        )
        events: list[UserEvent] = []
        for user_events in shoppers.sent.values():
            for kind, body in user_events:
                event = decode(DECODE_KIND[kind], json.dumps(body).encode())
                assert isinstance(event, Click | Purchase | Search), event
                events.append(event)
        half_life_ms = settings.profile_half_life_s * 1000
        dedup_ttl_ms = int(settings.dedup_ttl_s * 1000)
        folded = await BehaviorUpdater(store, encoder).fold(
            events, lambda user: UserProfile(user, half_life_ms, dedup_ttl_ms=dedup_ttl_ms)
        )
        assert not folded.parked
        assert all(folded.applied)
        return {user: profile for user, (profile, _) in folded.profiles.items()}

    return asyncio.run(fold())


def newest_per_key(settings: StreamSettings, topic: str, timeout_s: float = 60) -> dict[str, tuple[int, Any]]:
    """The newest value of each key of a (changelog) topic, with its partition, read from the beginning."""
    consumer = KafkaConsumer(**settings.connection().kafka_python(), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        newest: dict[str, tuple[int, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end within {timeout_s} s"
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    key = json.loads(record.key)
                    if record.value is None:
                        newest.pop(key, None)
                    else:
                        newest[key] = (tp.partition, json.loads(record.value))
    finally:
        consumer.close()
    return newest


def records(settings: StreamSettings, topic: str) -> int:
    """How many records ``topic`` holds."""
    consumer = KafkaConsumer(**settings.connection().kafka_python(), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
    finally:
        consumer.close()
    return sum(ends[tp] - starts[tp] for tp in partitions)


def sequence_faults(shoppers: Shoppers, state: dict[str, tuple[int, Any]]) -> dict[int, dict[str, str]]:
    """Per partition, each shopper whose saved state does not hold every event sent exactly once, and how."""
    faults: dict[int, dict[str, str]] = defaultdict(dict)
    for user, events in shoppers.sent.items():
        if user not in state:
            faults[-1][user] = f"no saved profile for {len(events)} events"
            continue
        partition, saved = state[user]
        sent = {event_key(body["event_id"]): body["event_id"] for _, body in events}
        applied = set(remembered(saved))
        missing = sorted(sent[key] for key in set(sent) - applied)
        unknown = len(applied - set(sent))
        if missing or unknown or saved["events"] != len(sent):
            faults[partition][user] = (
                f"sent {len(sent)}, counted {saved['events']}, missing seq {[int(i[-4:]) for i in missing]}, "
                f"{unknown} applied but never sent"
            )
    return dict(faults)


FLOAT_FIELDS = ("categories", "brands", "price_mean")


def same(key: str, got: Any, want: Any) -> bool:
    """Whether a profile field equals the clean run's: vectors and float fields to 1e-6, the rest exactly."""
    if got is None or want is None:
        return got is want
    if key.endswith("_vector"):
        got_vector, want_vector = decode_vector(got), decode_vector(want)
        return (
            got_vector is not None
            and want_vector is not None
            and bool(np.allclose(got_vector, want_vector, rtol=1e-5, atol=1e-6))
        )
    if key in FLOAT_FIELDS:
        return bool(got == pytest.approx(want, rel=1e-6))
    return bool(got == want)


def remembered(saved: dict[str, Any]) -> dict[int, int]:
    """The event keys a saved profile remembers, with their event times."""
    return UserProfile.from_dict(saved, half_life_ms=1.0).seen_events  # the half-life plays no part here


SEEN_FIELDS = ("seen_keys", "seen_ts")  # compared together, as a mapping: the order of applying may differ


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The fields of ``want`` that ``got`` has otherwise."""
    differ = [key for key, value in want.items() if key not in SEEN_FIELDS and not same(key, got.get(key), value)]
    if "seen_keys" in want and remembered(got) != remembered(want):  # saved profiles, not served rows
        differ.append("seen_keys")
    return differ


@pytest.fixture
def soak_env(system_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A system of its own on the session's broker and Milvus: group, topics, collections, a hashing encoder."""
    run = uuid.uuid4().hex[:6]
    names = {
        "app_id": f"soak-{run}",
        **{
            f"topic_{topic.replace('-', '_')}": f"soak-{run}.{topic}"
            for topic in ("products", "searches", "clicks", "purchases", "impressions", "model", "dlq", "item-deltas")
        },
        "topic_examples": f"soak-{run}.examples",
        "products_collection": f"soak_{run}_products",
        "users_collection": f"soak_{run}_users",
        "items_collection": f"soak_{run}_items",
    }
    return (
        system_env
        | {f"STREAMREC_{name.upper()}": value for name, value in names.items()}
        | {
            "STREAMREC_DATA_DIR": str(tmp_path / "data"),
            "STREAMREC_ENCODER_MODEL": ENCODER,
            "STREAMREC_ENCODER_MODELS": json.dumps({k: v.model_dump() for k, v in ENCODER_MODELS.items()}),
        }
    )


@pytest.fixture
def soak_settings(soak_env: dict[str, str], kafka: LocalKafka) -> StreamSettings:
    """The soak system's stream settings, as its processes read them from ``soak_env``."""
    fields = StreamSettings.model_fields
    values = {
        key.removeprefix("STREAMREC_").lower(): value
        for key, value in soak_env.items()
        if key.removeprefix("STREAMREC_").lower() in fields
    }
    return StreamSettings.model_validate(values | {"kafka_bootstrap": kafka.bootstrap_servers})


@pytest.fixture
def processes(soak_env: dict[str, str], soak_settings: StreamSettings, tmp_path: Path) -> Iterator[list[AllInOne]]:
    """Two workers, each with its own state directory, and an API apart (never killed), all started."""
    ensure_topics(soak_settings)
    workers = [
        AllInOne(
            soak_env | {"STREAMREC_DATA_DIR": str(tmp_path / f"worker{n}")},
            tmp_path / f"worker{n}.log",
            free_port(),
            "worker",
        )
        for n in range(2)
    ]
    api = AllInOne(soak_env, tmp_path / "api.log", free_port(), "api")
    everything = [*workers, api]
    try:
        for process in everything:
            process.spawn()
        for process in everything:
            process.wait_ready(180)
        yield everything
    finally:
        for process in everything:
            process.kill()


def kill_in_turn(workers: list[AllInOne], rng: random.Random) -> int:
    """``CYCLES`` times, SIGKILL the next worker at a random moment and start it again; how many were at work."""
    at_work = 0  # kills of a worker that had processed events since it started
    for cycle in range(CYCLES):
        victim = workers[cycle % len(workers)]
        if rng.random() < 0.5:  # half the kills find the victim recovered; the rest may catch it starting
            victim.wait_ready(120)
        time.sleep(rng.uniform(*KILL_GAP_S))
        try:
            processed = victim.api.counter("streamrec_events_total", agent="behavior", outcome="processed")
        except OSError:  # not listening yet: killed while starting
            processed = 0.0
        at_work += processed > 0
        victim.kill()
        victim.spawn()
    return at_work


@pytest.mark.timeout(900)
def test_twenty_kill_9_cycles_apply_every_event_exactly_once_and_commit_to_the_end(
    processes: list[AllInOne], soak_settings: StreamSettings
) -> None:
    """SIGKILL two workers in turn at random moments under load: every event applied once, profiles as a clean run."""
    seed = int(os.environ.get("STREAMREC_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"soak seed {seed} (STREAMREC_SOAK_SEED={seed} draws the same kill moments)")
    *workers, api = processes
    items = catalog(PRODUCTS)
    publisher = Publisher(soak_settings)
    try:
        publisher.send_all(("product", item) for item in items)
        wait_for(lambda: (api.api.ready() or {}).get("products", 0) >= PRODUCTS, timeout_s=60, interval_s=0.5)
        shoppers = Shoppers(publisher, [str(p["product_id"]) for p in items if p["in_stock"]], seed)
        shoppers.start()
        started = time.monotonic()
        at_work = kill_in_turn(workers, random.Random(seed))
        chaos_s = time.monotonic() - started
        for worker in workers:
            worker.wait_ready(180)
        shoppers.stop()
        stopped = time.monotonic()
        behind = wait_committed(soak_settings, COMMIT_BOUND_S)
        commit_s = time.monotonic() - stopped
    finally:
        publisher.close()
    context = f"seed {seed}, {shoppers.total} events, {at_work} of {CYCLES} kills at work"
    print(f"{context}; chaos {chaos_s:.0f} s; committed to the end {commit_s:.1f} s after the producer stopped")
    assert not behind, (
        f"records past the committed offset {COMMIT_BOUND_S:.0f} s after the producer stopped: {behind} ({context})"
    )
    assert at_work >= CYCLES // 4, f"too few kills hit a working worker ({context})"

    state = newest_per_key(soak_settings, f"{soak_settings.app_id}-profiles-changelog")
    faults = sequence_faults(shoppers, state)
    assert not faults, f"events not applied exactly once ({context}), per partition:\n" + "\n".join(
        f"  partition {partition}: {len(users)} shoppers, e.g. {dict(list(users.items())[:3])}"
        for partition, users in sorted(faults.items())
    )

    encoder = AsyncEncoder(load_model(EncoderSettings(model=ENCODER, models=ENCODER_MODELS)).encoder)
    clean = clean_run(shoppers, items, soak_settings, encoder)
    wrong_state = {u: d for u, p in clean.items() if (d := differences(state[u][1], p.to_dict()))}
    assert not wrong_state, f"saved profiles unlike a clean run, fields per shopper: {wrong_state} ({context})"

    def served_wrong() -> dict[str, list[str]]:
        wrong = {}
        for user, profile in clean.items():
            status, body = api.api.get(f"/v1/users/{user}")
            features = body.get("features", {}) if status == 200 else {}
            if diff := differences(features, profile.to_row(encoder.dim).features):
                wrong[user] = diff
        return wrong

    with contextlib.suppress(TimeoutError):  # the last upserts may take a moment to be searchable
        wait_for(lambda: not served_wrong(), timeout_s=15, interval_s=1)
    assert not (wrong := served_wrong()), f"served profiles unlike a clean run, fields per shopper: {wrong} ({context})"
    assert records(soak_settings, soak_settings.topic_dlq) == 0, f"healthy events were dead-lettered ({context})"
