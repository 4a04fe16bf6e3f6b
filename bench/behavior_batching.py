"""Behavior events/s folded into profiles: one event at a time vs in batches.

Runs the worker's real update path (``streams.updater.BehaviorUpdater``) with
the real text encoder and the in-memory store, on the same events, both ways
in one run, and prints the ratio. Kafka and Milvus are left out on purpose:
this measures what batching saves in the per-event work itself.

    python bench/behavior_batching.py [--events 2000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from encoders import AsyncEncoder, EncoderSettings, TransformerTextEncoder
from ranker.store import MemoryStore, ProductRow
from streamrec.sample_data import background_traffic, catalog
from streams.events import EVENT_KINDS, UserEvent, decode
from streams.profiles import UserProfile
from streams.updater import BehaviorUpdater

KIND_OF = {"search": "searches", "click": "clicks", "purchase": "purchases"}
HALF_LIFE_MS = 7 * 24 * 3600 * 1000.0


async def _run(updater: BehaviorUpdater, events: Sequence[UserEvent], batch: int) -> float:
    profiles: dict[str, UserProfile] = {}

    def load(user_id: str) -> UserProfile:
        return profiles.get(user_id) or UserProfile(user_id, HALF_LIFE_MS)

    started = time.perf_counter()
    for start in range(0, len(events), batch):
        folded = await updater.fold(events[start : start + batch], load)
        for user_id, (profile, _) in folded.profiles.items():
            profiles[user_id] = profile
        await updater.publish([profile for profile, _ in folded.profiles.values()])
    return len(events) / (time.perf_counter() - started)


async def main(n_events: int, batch: int) -> None:
    assert set(KIND_OF.values()) <= set(EVENT_KINDS)
    encoder = AsyncEncoder(TransformerTextEncoder(EncoderSettings()))
    store = MemoryStore()
    products = catalog(400)
    vectors = await encoder.encode([f"{p['title']}. {p['category']}" for p in products], caller="bench")
    store.upsert_products(
        [
            ProductRow(
                str(p["product_id"]),
                v,
                str(p["title"]),
                str(p["category"]),
                str(p["brand"]),
                float(str(p["price"])),
                bool(p["in_stock"]),
                0,
                "bench",
            )
            for p, v in zip(products, vectors, strict=True)
        ]
    )
    users = max(1, n_events // 8)
    raw = background_traffic(products, n_users=users, events_per_user=8)[:n_events]
    events: list[UserEvent] = []
    for kind, body in raw:
        decoded = decode(KIND_OF[kind], json.dumps(body).encode())  # type: ignore[arg-type]
        assert not hasattr(decoded, "reason"), decoded
        events.append(decoded)  # type: ignore[arg-type]
    updater = BehaviorUpdater(store, encoder)
    print(f"device: {getattr(encoder.encoder, 'device', 'cpu')}, events: {len(events)}, users: {users}")
    baseline = await _run(updater, events, 1)
    batched = await _run(updater, events, batch)
    print(f"one event at a time : {baseline:10.0f} events/s")
    print(f"batches of {batch:<9d}: {batched:10.0f} events/s")
    print(f"ratio batched/one-at-a-time: {batched / baseline:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch))
