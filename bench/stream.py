"""The stream worker on the real broker: ingest rate against a bare consumer, restart time, memory.

One run, one broker, one Milvus (Milvus Lite served on loopback):

1. products are written to the store (hashing vectors of the bench's
   encoder, so the worker finds them) and the behavior topics are filled in
   steps (default 10k, 100k, 1M events in all): 100,000 shoppers with Zipf
   activity, 50,000 products with Zipf popularity, 70% clicks, 10%
   purchases, 20% searches over 20,000 distinct queries with Zipf frequency;
2. after each step one ``streamrec worker`` drains the new events (full work:
   decode, dedup, profiles, popularity and co-visitation, label join,
   learning, Milvus upserts) and is then restarted: the time to ready is the
   restart figure at that much history; the drain of the last step is the
   ingest figure;
3. a bare aiokafka ``getmany`` + ``json.loads`` loop reads the same events
   in the same run: the ratio is the worker's share of what the client
   library alone can do here;
4. a second worker group reads only the clicks and purchases topics.

Writes ``bench/results/stream.json`` and ``bench/results/stream.md``.

    python bench/stream.py [--events 1000000] [--steps 10000 100000] [--profile]

``--profile`` records the worker with py-spy while it drains the last step
(``bench/results/stream-profile.txt``: the hottest functions, own and total).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from encoders.text import HashingTextEncoder
from ranker.milvus_store import MilvusStore
from ranker.settings import RankerSettings
from ranker.store import ProductRow
from streamrec.launcher import AllInOne
from streamrec.localkafka import LocalKafka, free_port
from streamrec.localmilvus import LocalMilvus
from streams.settings import StreamSettings
from streams.topics import ensure_topics

RESULTS = Path(__file__).parent / "results"
DIM = 384  # the dimension of the default text model, so vectors cost what they cost in production
CATEGORIES = ("shoes", "coffee", "books", "garden", "toys", "audio", "kitchen", "outdoor", "beauty", "games")
KIND_SHARE = (("click", 0.7), ("purchase", 0.1), ("search", 0.2))


@dataclass(frozen=True)
class Workload:
    """The synthetic shop: who acts how often, on what."""

    shoppers: int = 100_000
    products: int = 50_000
    queries: int = 20_000
    zipf: float = 1.1
    seed: int = 7

    def product(self, index: int) -> dict[str, Any]:
        """The catalog row of product ``index``."""
        category = CATEGORIES[index % len(CATEGORIES)]
        return {
            "product_id": f"p{index}",
            "title": f"{category} item {index}",
            "category": category,
            "brand": f"brand{index % 97}",
            "price": float(5 + index % 200),
        }

    def events(self, start: int, count: int, start_ms: int) -> Iterator[tuple[str, str, bytes]]:
        """``(kind, key, value)`` of events ``start .. start+count-1``; deterministic per index range."""
        rng = np.random.default_rng((self.seed, start))
        shoppers = _zipf_draw(rng, self.shoppers, self.zipf, count)
        products = _zipf_draw(rng, self.products, self.zipf, count)
        queries = _zipf_draw(rng, self.queries, self.zipf, count)
        kinds = rng.choice([k for k, _ in KIND_SHARE], size=count, p=[p for _, p in KIND_SHARE])
        for offset in range(count):
            number = start + offset
            user = f"u{shoppers[offset]}"
            event: dict[str, Any] = {
                "event_id": f"e{number}",
                "ts": start_ms + number,
                "schema_version": 1,
                "user_id": user,
            }
            kind = str(kinds[offset])
            if kind == "search":
                query = int(queries[offset])
                event["query"] = f"{CATEGORIES[query % len(CATEGORIES)]} query {query}"
            else:
                event["product_id"] = f"p{products[offset]}"
            yield kind, user, json.dumps(event).encode()


def _zipf_draw(rng: np.random.Generator, n: int, a: float, size: int) -> np.ndarray:
    """Ranks ``0..n-1`` drawn with probability proportional to ``1 / (rank+1)**a`` (a bounded Zipf)."""
    weights = 1.0 / np.arange(1, n + 1) ** a
    cumulative = np.cumsum(weights / weights.sum())
    ranks: np.ndarray = np.minimum(np.searchsorted(cumulative, rng.random(size)), n - 1)
    return ranks


@dataclass
class Run:
    """Everything one bench run measured."""

    config: dict[str, Any]
    ingest: dict[str, Any] = field(default_factory=dict)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    freshness: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    """The broker, the Milvus server and the worker processes of one run."""

    def __init__(self, root: Path, workload: Workload, encoder_threads: int, start_ms: int) -> None:
        self.root = root
        self.workload = workload
        self.kafka = LocalKafka(root / "kafka", free_port())
        self.milvus = LocalMilvus(root / "milvus" / "milvus.db", free_port())
        self.encoder_threads = encoder_threads
        self.start_ms = start_ms  # event time of the first event; one millisecond apart
        self.processes: list[AllInOne] = []

    def settings(self, app_id: str = "bench") -> StreamSettings:
        return StreamSettings(kafka_bootstrap=self.kafka.bootstrap_servers, app_id=app_id)

    def env(self, app_id: str, **extra: str) -> dict[str, str]:
        models = {"bench-hashing": {"loader": "hashing", "source": str(DIM)}}
        return {
            "STREAMREC_KAFKA_BOOTSTRAP": self.kafka.bootstrap_servers,
            "STREAMREC_MILVUS_URI": self.milvus.uri,
            "STREAMREC_APP_ID": app_id,
            "STREAMREC_DATA_DIR": str(self.root / f"worker-{app_id}"),
            "STREAMREC_ENCODER_MODELS": json.dumps(models),
            "STREAMREC_ENCODER_MODEL": "bench-hashing",
            "STREAMREC_ENCODER_THREADS": str(self.encoder_threads),
            "STREAMREC_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
            **extra,
        }

    def start_worker(self, app_id: str, **extra: str) -> AllInOne:
        """``streamrec worker`` of group ``app_id``, started and ready."""
        return self._start(
            AllInOne(self.env(app_id, **extra), self.root / f"worker-{app_id}.log", free_port(), "worker")
        )

    def start_api(self, app_id: str) -> AllInOne:
        """``streamrec api`` over the same Milvus, started and ready."""
        return self._start(AllInOne(self.env(app_id), self.root / f"api-{app_id}.log", free_port(), "api"))

    def _start(self, process: AllInOne) -> AllInOne:
        self.processes.append(process)
        process.start(timeout_s=600)
        return process

    def close(self) -> None:
        """Stop every process, Milvus and the broker."""
        for process in self.processes:
            process.stop()
        self.milvus.stop()
        self.kafka.stop()

    def load_catalog(self) -> None:
        """The products, embedded by the hashing encoder the workers use, straight into the store."""
        encoder = HashingTextEncoder(DIM)
        store = MilvusStore(RankerSettings(milvus_uri=self.milvus.uri, milvus_timeout_s=120), dim=DIM)
        now_ms = int(time.time() * 1000)
        rows = []
        for index in range(self.workload.products):
            p = self.workload.product(index)
            rows.append((p, f"{p['title']}. {p['category']}"))
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            vectors = encoder.encode([text for _, text in chunk])
            store.upsert_products(
                [
                    ProductRow(
                        p["product_id"], v, p["title"], p["category"], p["brand"], p["price"], True, now_ms, "bench"
                    )
                    for (p, _), v in zip(chunk, vectors, strict=True)
                ]
            )


def produce(
    settings: StreamSettings, workload: Workload, start: int, count: int, *, start_ms: int, shoppers: set[str]
) -> float:
    """Write events ``start .. start+count-1`` (adding their shoppers to ``shoppers``); returns events/s."""
    topics = {"click": settings.topic_clicks, "purchase": settings.topic_purchases, "search": settings.topic_searches}
    producer = KafkaProducer(
        **settings.connection().kafka_python(), acks=1, linger_ms=20, batch_size=512 * 1024, max_request_size=4 << 20
    )
    began = time.perf_counter()
    for kind, key, value in workload.events(start, count, start_ms):
        producer.send(topics[kind], key=key.encode(), value=value)
        shoppers.add(key)
    producer.flush(timeout=300)
    producer.close()
    return count / (time.perf_counter() - began)


def end_offsets(settings: StreamSettings, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**settings.connection().kafka_python())
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return ends
    finally:
        consumer.close()


def committed_total(admin: KafkaAdminClient, group: str, partitions: Mapping[TopicPartition, int]) -> int:
    offsets = admin.list_group_offsets({group: list(partitions)}).get(group, {})
    return sum(max(0, offsets[tp].offset) for tp in partitions if tp in offsets)


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time ``pid`` has used so far (0 without a process)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(
    settings: StreamSettings,
    group: str,
    topics: Sequence[str],
    already: int,
    *,
    pid: int | None = None,
    timeout_s: float = 3600,
) -> dict[str, float]:
    """Wait until ``group`` committed the end of ``topics``; the rate counts from its first commit past ``already``.

    With ``pid``, also the worker's CPU time per event: on a machine shared
    with other work the rate moves with the load, the CPU cost much less.
    """
    cpu_before = cpu_seconds(pid)
    ends = end_offsets(settings, topics)
    target = sum(ends.values())
    admin = KafkaAdminClient(**settings.connection().kafka_python())
    try:
        began = time.monotonic()
        first: tuple[float, int] | None = None
        done = already
        last_report = began
        while done < target:
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"{group}: {target - done} events not committed within {timeout_s:.0f} s")
            time.sleep(0.2)
            done = committed_total(admin, group, ends)
            if first is None and done > already:
                first = (time.monotonic(), done)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print(f"  {group}: {done - already:,}/{target - already:,} committed", flush=True)
        ended = time.monotonic()
    finally:
        admin.close()
    assert first is not None
    counted = target - first[1]
    seconds = ended - first[0]
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / (target - already) if pid is not None else 0.0
    return {
        "events": target - already,
        "seconds": round(ended - began, 2),
        "events_per_s": counted / seconds,
        "cpu_us_per_event": round(cpu_us, 1),
    }


async def bare_loop(settings: StreamSettings, topics: Sequence[str], total: int) -> float:
    """Events/s of aiokafka ``getmany`` + ``json.loads`` over ``topics`` from the start, to ``total`` events."""
    consumer = AIOKafkaConsumer(
        *topics,
        **settings.connection().aiokafka(),
        group_id=f"bare-{time.monotonic_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    seen = 0
    kinds: Counter[str] = Counter()
    try:
        began = None
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                if began is None:
                    began = time.perf_counter()
                for record in records:
                    event = json.loads(record.value)
                    kinds["search" if "query" in event else "product"] += 1
                seen += len(records)
        assert began is not None
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (Milvus Lite's is not a child of the worker)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def restart(worker: AllInOne) -> float:
    """Stop ``worker`` (SIGTERM, drained) and start it again; seconds from start to ready."""
    worker.stop()
    began = time.monotonic()
    worker.start(timeout_s=600)
    return time.monotonic() - began


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "50",
            "--nonblocking",
            "--threads",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def finish_profile(profiler: subprocess.Popen[bytes] | None, args: argparse.Namespace, name: str) -> None:
    """Wait for ``profiler`` (if any) and write its summary to ``<out>/<name>.txt``."""
    if profiler is None:
        return
    profiler.wait(timeout=args.profile_s + 60)
    summary = summarise_profile(args.out / f"{name}.raw")
    (args.out / f"{name}.txt").write_text(summary + "\n")


def summarise_profile(raw: Path, top: int = 30) -> str:
    """The functions with the most samples, own and total, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "own%   function"]
    lines += [f"{100 * n / samples:5.1f}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "total% function"]
    lines += [f"{100 * n / samples:5.1f}  {frame}" for frame, n in total.most_common(top)]
    return "\n".join(lines)


def markdown(run: Run) -> str:
    ingest = run.ingest
    rows = [
        "| what | measured | target |",
        "|---|---|---|",
        f"| mixed workload, full work | {ingest['mixed_per_s']:,.0f} events/s | 5,000 events/s |",
        f"| bare getmany + json.loads, same events | {ingest['bare_per_s']:,.0f} events/s | |",
        f"| worker / bare | {ingest['ratio']:.3f} | 0.25 |",
    ]
    if "clicks_purchases_per_s" in ingest:
        rows.append(
            f"| clicks and purchases only, full work | {ingest['clicks_purchases_per_s']:,.0f} events/s "
            "| 10,000 events/s |"
        )
    for point in run.restarts:
        rows.append(
            f"| ready after restart, {point['history']:,} events of history | {point['seconds']:.1f} s | < 15 s |"
        )
    for level in run.freshness:
        rows.append(
            f"| click to profile seen through the API at {level['share']:.0%} of capacity "
            f"({level['events_per_s']:,} events/s): p50 / p99 | {level['p50_ms']} / {level['p99_ms']} ms "
            f"({level['probes']} probes, {level['missed']} missed) | p99 < 1,000 ms at 50% |"
        )
    if run.memory:
        rows.append(
            f"| worker RSS at {run.memory['shoppers']:,} shoppers | {run.memory['rss_mb']:,.0f} MB | < 1,500 MB |"
        )
    return "\n".join(rows) + "\n"


def ingest_and_restarts(bench: Bench, args: argparse.Namespace, run: Run) -> AllInOne:
    """Fill the topics step by step; after each step the worker drains, then restarts. Returns the worker, ready."""
    settings = bench.settings("bench")
    steps = run.config["steps"]
    behavior = [settings.topic_clicks, settings.topic_purchases, settings.topic_searches]
    worker = bench.start_worker("bench")
    produced = 0
    shoppers: set[str] = set()
    for step in steps:
        rate = produce(settings, bench.workload, produced, step - produced, start_ms=bench.start_ms, shoppers=shoppers)
        print(f"produced {step - produced:,} events ({rate:,.0f}/s); draining", flush=True)
        profiler = None
        if args.profile and step == steps[-1] and worker.pid is not None:
            profiler = profile(worker.pid, args.profile_s, args.out / "stream-profile.raw")
        drained = drain(settings, "bench", behavior, produced, pid=worker.pid)
        finish_profile(profiler, args, "stream-profile")
        batches = worker.api.counter("streamrec_batch_seconds_count", agent="behavior")
        print(
            f"  drained {drained['events']:,} in {drained['seconds']} s: {drained['events_per_s']:,.0f}/s, "
            f"{drained['cpu_us_per_event']:.0f} us of worker CPU per event, {batches:.0f} batches so far",
            flush=True,
        )
        produced = step
        if step == steps[-1]:
            run.ingest["mixed_events"] = drained["events"]
            run.ingest["mixed_per_s"] = drained["events_per_s"]
            run.ingest["mixed_cpu_us_per_event"] = drained["cpu_us_per_event"]
            assert worker.pid is not None
            run.memory = {"shoppers": len(shoppers), "rss_mb": rss_mb(worker.pid)}
        seconds = restart(worker)
        print(f"  ready {seconds:.1f} s after a restart at {produced:,} events of history", flush=True)
        run.restarts.append({"history": produced, "seconds": seconds})
    run.ingest["bare_per_s"] = asyncio.run(bare_loop(settings, behavior, produced))
    run.ingest["ratio"] = run.ingest["mixed_per_s"] / run.ingest["bare_per_s"]
    print(f"bare loop: {run.ingest['bare_per_s']:,.0f}/s; ratio {run.ingest['ratio']:.3f}", flush=True)
    return worker


def clicks_and_purchases(bench: Bench, args: argparse.Namespace, run: Run) -> None:
    """A second group, with its own tables, over topics holding only clicks and purchases."""
    cp = StreamSettings(
        kafka_bootstrap=bench.kafka.bootstrap_servers,
        app_id="bench-cp",
        topic_clicks="cp.clicks",
        topic_purchases="cp.purchases",
        topic_searches="cp.searches",
    )
    ensure_topics(cp)
    produce_clicks_purchases(cp, bench.workload, args.clicks_purchases, bench.start_ms)
    worker = bench.start_worker(
        "bench-cp",
        STREAMREC_TOPIC_CLICKS=cp.topic_clicks,
        STREAMREC_TOPIC_PURCHASES=cp.topic_purchases,
        STREAMREC_TOPIC_SEARCHES=cp.topic_searches,
    )
    profiler = None
    if args.profile and worker.pid is not None:
        profiler = profile(worker.pid, args.profile_s, args.out / "stream-profile-cp.raw")
    drained = drain(cp, "bench-cp", [cp.topic_clicks, cp.topic_purchases], 0, pid=worker.pid)
    finish_profile(profiler, args, "stream-profile-cp")
    worker.stop()
    run.ingest["clicks_purchases_per_s"] = drained["events_per_s"]
    run.ingest["clicks_purchases_cpu_us_per_event"] = drained["cpu_us_per_event"]
    print(f"clicks and purchases only: {drained['events_per_s']:,.0f}/s", flush=True)


def freshness(
    bench: Bench, worker: AllInOne, capacity: float, shares: Sequence[float], *, seconds: float, first_event: int
) -> list[dict[str, Any]]:
    """Click to profile seen through the API, while an open-loop producer writes at shares of ``capacity``.

    A probe is a click by a shopper never seen before; it is seen once the
    API's ``/v1/users/{id}`` counts it (the row recommendations are computed
    from). Probes go one at a time, ten a second, through a producer of
    their own that does not linger.
    """
    settings = bench.settings("bench")
    api = bench.start_api("bench")
    topics = {"click": settings.topic_clicks, "purchase": settings.topic_purchases, "search": settings.topic_searches}
    results = []
    next_event = first_event
    for share in shares:
        rate = share * capacity
        stop = threading.Event()
        load = threading.Thread(
            target=_open_loop,
            args=(settings, bench.workload, topics, rate),
            kwargs={"first_event": next_event, "stop": stop},
        )
        load.start()
        spent_before = time_spent(worker)
        probes = KafkaProducer(**settings.connection().kafka_python(), acks=1, linger_ms=0)
        latencies: list[float] = []
        missed = 0
        ends = time.monotonic() + seconds
        number = 0
        try:
            while time.monotonic() < ends:
                user = f"probe-{share}-{number}"
                number += 1
                event = {"event_id": f"{user}-click", "ts": int(time.time() * 1000), "schema_version": 1}
                event |= {"user_id": user, "product_id": "p0"}
                sent = time.monotonic()
                probes.send(settings.topic_clicks, key=user.encode(), value=json.dumps(event).encode())
                probes.flush()
                while api.api.profile_events(user) < 1:
                    if time.monotonic() - sent > 10:
                        missed += 1
                        break
                    time.sleep(0.025)  # a poll is a Milvus query: polling harder would slow what it measures
                else:
                    latencies.append((time.monotonic() - sent) * 1000)
                time.sleep(0.1)
        finally:
            stop.set()
            load.join()
            probes.close()
        next_event += int(rate * seconds) + 1000
        ordered = sorted(latencies)
        result = {
            "share": share,
            "events_per_s": round(rate),
            "probes": len(ordered),
            "missed": missed,
            "p50_ms": round(ordered[len(ordered) // 2], 1) if ordered else None,
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1) if ordered else None,
            "worker_mean_ms": mean_ms(spent_before, time_spent(worker)),
        }
        print(f"  freshness at {share:.0%} of capacity ({rate:,.0f} events/s): {result}", flush=True)
        results.append(result)
    api.stop()
    return results


# Where a worker's time goes, read from its metrics: (metric, labels) per name.
SPENT = {
    "behavior_batch": ("streamrec_batch_seconds", {"agent": "behavior"}),
    "upsert_users": ("streamrec_milvus_call_seconds", {"operation": "upsert_users", "outcome": "ok"}),
    "upsert_items": ("streamrec_milvus_call_seconds", {"operation": "upsert_items", "outcome": "ok"}),
    "encode_queries": ("streamrec_encoder_batch_seconds", {"caller": "worker"}),
    **{
        f"phase_{phase}": ("streamrec_behavior_phase_seconds", {"phase": phase})
        for phase in ("decode", "lock", "fold", "changelog", "publish", "item_deltas", "label_join")
    },
}


def time_spent(worker: AllInOne) -> dict[str, tuple[float, float]]:
    """Per name of SPENT: the metric's (sum of seconds, count) so far; empty if the worker did not answer."""
    spent = {}
    try:
        for name, (metric, labels) in SPENT.items():
            spent[name] = (
                worker.api.counter(f"{metric}_sum", **labels),
                worker.api.counter(f"{metric}_count", **labels),
            )
    except (OSError, TimeoutError) as exc:  # a diagnostic: never the reason a run is lost
        print(f"  worker metrics not read: {exc!r}", flush=True)
        return {}
    return spent


def mean_ms(before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """Mean milliseconds per call between two :func:`time_spent` readings, with the number of calls."""
    out: dict[str, Any] = {}
    for name, (total, count) in after.items():
        if name not in before:
            continue
        calls = count - before[name][1]
        out[name] = {
            "calls": int(calls),
            "mean_ms": round((total - before[name][0]) * 1000 / calls, 1) if calls else None,
        }
    return out


def _open_loop(
    settings: StreamSettings,
    workload: Workload,
    topics: Mapping[str, str],
    rate: float,
    *,
    first_event: int,
    stop: threading.Event,
) -> None:
    """Write ``rate`` events/s in 10 ms ticks, whatever the worker does, until ``stop``."""
    producer = KafkaProducer(**settings.connection().kafka_python(), acks=1, linger_ms=5)
    began = time.monotonic()
    sent = 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - began) * rate) - sent
            if due > 0:
                now_ms = int(time.time() * 1000)
                number = first_event + sent
                for kind, key, value in workload.events(number, due, now_ms - number):
                    producer.send(topics[kind], key=key.encode(), value=value)
                sent += due
            time.sleep(0.01)
    finally:
        producer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="behavior events in all")
    parser.add_argument("--steps", type=int, nargs="*", default=[10_000, 100_000], help="restart points before the end")
    parser.add_argument("--clicks-purchases", type=int, default=300_000, help="events of the clicks-only run; 0 skips")
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--loads", type=float, nargs="*", default=[0.25, 0.5, 0.8], help="shares of capacity")
    parser.add_argument("--load-s", type=float, default=20.0, help="seconds of each freshness level")
    parser.add_argument("--encoder-threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="py-spy the worker while it drains the last step")
    parser.add_argument("--profile-s", type=int, default=60, help="seconds py-spy records")
    parser.add_argument("--keep", action="store_true", help="keep the broker's and worker's files")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workload = Workload(args.shoppers, args.products, args.queries)
    steps = sorted({s for s in args.steps if 0 < s < args.events} | {args.events})
    root = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    bench = Bench(root, workload, args.encoder_threads, start_ms=int(time.time() * 1000) - args.events - 60_000)
    run = Run(config={**vars(args), "out": str(args.out), "steps": steps, "cpus": os.cpu_count()})
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"bench in {root}", flush=True)
    bench.kafka.start()
    bench.milvus.start()
    try:
        ensure_topics(bench.settings("bench"))
        began = time.perf_counter()
        bench.load_catalog()
        print(f"catalog: {workload.products:,} products in {time.perf_counter() - began:.1f} s", flush=True)
        worker = ingest_and_restarts(bench, args, run)
        if args.loads:
            run.freshness = freshness(
                bench, worker, run.ingest["mixed_per_s"], args.loads, seconds=args.load_s, first_event=args.events
            )
        worker.stop()
        if args.clicks_purchases:
            clicks_and_purchases(bench, args, run)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    (args.out / "stream.json").write_text(json.dumps(vars(run), indent=2, default=str) + "\n")
    table = markdown(run)
    (args.out / "stream.md").write_text(table)
    print(table)
    return 0


def produce_clicks_purchases(settings: StreamSettings, workload: Workload, count: int, start_ms: int) -> None:
    """``count`` clicks and purchases (searches of the same draw left out)."""
    producer = KafkaProducer(
        **settings.connection().kafka_python(), acks=1, linger_ms=20, batch_size=512 * 1024, max_request_size=4 << 20
    )
    topics = {"click": settings.topic_clicks, "purchase": settings.topic_purchases}
    sent = 0
    start = 0
    while sent < count:
        for kind, key, value in workload.events(start, 10_000, start_ms):
            if kind in topics and sent < count:
                producer.send(topics[kind], key=key.encode(), value=value)
                sent += 1
        start += 10_000
    producer.flush(timeout=300)
    producer.close()


if __name__ == "__main__":
    sys.exit(main())
