"""Cost of a label-expiry tick with nothing due, and label-join records per click, as the table grows.

Baseline: the timer as it was, walking every stored state to find the due
ones (O(table) per tick, every ``STREAMREC_JOIN_TICK_S``). Candidate:
``LabelJoin.close_due`` as shipped, answered by its deadline index. Both run
on the same in-memory table in one process; the ratio is printed. The same
run counts the changelog records a batch of clicks without a request id
writes (the shipped join writes none).

    python bench/join_timers.py [--shoppers 1000 10000 100000] [--ticks 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import faust

from online_learning.join import JoinState
from online_learning.settings import LearningSettings
from streams.events import Click, Impression, Rejection
from streams.fakes import MemoryTable, MemoryTopic
from streams.labels import LabelJoin
from streams.settings import StreamSettings

T0_MS = 1_767_225_600_000
WINDOW_MS = 1_800_000
PARTITIONS = {0, 1, 2, 3}


async def _no_dead_letters(_: Any, rejection: Rejection, agent: str) -> None:
    raise AssertionError(f"{agent}: {rejection}")


def _join(now_ms: list[int]) -> tuple[LabelJoin, MemoryTable]:
    table = MemoryTable("label-join")
    labels = LabelJoin(
        faust.App("bench-labels", store="memory://", autodiscover=False),
        StreamSettings(),
        LearningSettings(attribution_window_s=WINDOW_MS / 1000),
        _no_dead_letters,
        clock=lambda: now_ms[0] / 1000,
        table=table,  # type: ignore[arg-type]
        examples=MemoryTopic("examples"),  # type: ignore[arg-type]
    )
    return labels, table


def _impression(user: str) -> Impression:
    items = [{"product_id": f"p{n}", "position": n, "features": {"similarity": 0.5}} for n in range(1, 11)]
    return Impression.model_validate(
        {
            "event_id": f"r-{user}",
            "ts": T0_MS,
            "schema_version": 1,
            "user_id": user,
            "surface": "search",
            "items": items,
        }
    )


def _source(n: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(partition=n % 4))


async def _scan_tick(table: MemoryTable, now_ms: int) -> int:
    """The baseline tick: every stored state's next deadline, to find the due ones."""
    due = 0
    for _, data in list(table.data.items()):
        if int(data.get("partition", 0)) not in PARTITIONS:
            continue
        deadline = JoinState(data, WINDOW_MS).next_deadline()
        if deadline is not None and deadline <= now_ms:
            due += 1
    return due


async def _measure(shoppers: int, ticks: int) -> dict[str, float]:
    now_ms = [T0_MS]
    labels, table = _join(now_ms)
    users = [f"u{n}" for n in range(shoppers)]
    for start in range(0, shoppers, 500):
        await labels.apply([(_source(n), _impression(users[n])) for n in range(start, min(start + 500, shoppers))])
    now_ms[0] = T0_MS + WINDOW_MS // 2  # every impression open, none due

    started = time.perf_counter()
    for _ in range(ticks):
        assert await _scan_tick(table, now_ms[0]) == 0
    scan_s = (time.perf_counter() - started) / ticks
    table.data.reads = 0
    started = time.perf_counter()
    for _ in range(ticks):
        assert await labels.close_due(PARTITIONS) == 0
    index_s = (time.perf_counter() - started) / ticks
    assert table.data.reads == 0

    before = len(table.changelog_topic.acked)
    clicks = [
        (_source(n), Click(event_id=f"c{n}", ts=T0_MS, schema_version=1, user_id=f"new{n}", product_id="p1"))
        for n in range(500)
    ]
    await labels.apply(clicks)
    records = len(table.changelog_topic.acked) - before
    return {
        "shoppers": shoppers,
        "scan_tick_ms": round(scan_s * 1000, 3),
        "index_tick_ms": round(index_s * 1000, 4),
        "ratio": round(scan_s / index_s, 1),
        "records_per_click_without_request_id": records / len(clicks),
    }


def main() -> None:
    """Print one JSON line per table size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    for shoppers in args.shoppers:
        print(json.dumps(asyncio.run(_measure(shoppers, args.ticks))), flush=True)


if __name__ == "__main__":
    main()
