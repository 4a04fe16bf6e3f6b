"""``streamrec demo``: the whole system on one machine, showing results adapt.

Starts a local Kafka broker, then ``streamrec all-in-one`` (worker + API on
Milvus Lite), loads a sample catalog, replays background shoppers, and shows
one shopper's results before and after their clicks and purchase.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from streamrec.launcher import AllInOne, ApiClient, Publisher, click_event, wait_for
from streamrec.localkafka import LocalKafka, free_port
from streamrec.sample_data import CATEGORIES, QUERIES, background_traffic, catalog, shopper_events
from streams.settings import StreamSettings

SHOPPER = "demo-shopper"
DEMO_WINDOW_S = 4.0
DEMO_SNAPSHOT_S = 1.0
FOCUS = "coffee"


def _say(text: str) -> None:
    print(text, flush=True)


def _progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    line = f"  {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    if sys.stdout.isatty():
        sys.stdout.write("\r" + line + ("\n" if done >= total else ""))
    else:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _show(title: str, body: dict[str, Any]) -> None:
    _say(f"\n  {title}  ({body['strategy']}, {body['took_ms']} ms)")
    for rank, item in enumerate(body["items"], start=1):
        _say(f"   {rank:2d}. [{item['category']:<13}] {item['title'][:70]:<70} {item['score']:+.3f}")


def _wait_indexed(api: ApiClient, total: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    shown = -1
    while True:
        ready = api.ready() or {}
        done = int(ready.get("products", 0))
        if done != shown:
            _progress("products embedded and indexed", min(done, total), total)
            shown = done
        if done >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{total} products indexed after {timeout_s:.0f} s")
        time.sleep(0.5)


def _learn_from_shoppers(api: ApiClient, publisher: Publisher, items: list[dict[str, Any]]) -> None:
    """Shoppers search through the API and click what they came for; the ranker learns from it."""
    rng = random.Random(5)
    shoppers = 60
    clicks = 0
    for n in range(shoppers):
        user, category = f"browser-{n:03d}", rng.choice(CATEGORIES)
        body = api.json("/v1/search", q=QUERIES[category], user_id=user, k=10)
        for position, item in enumerate(body["items"], start=1):
            # Shoppers mostly click what they came for, more often near the top.
            if item["category"] == category and rng.random() < 0.8 / position**0.3:
                clicks += 1
                publisher.send("click", click_event(user, item["product_id"], body["request_id"], position))
        _progress("shoppers searching and clicking through the API", n + 1, shoppers)
    publisher.flush()
    _say(f"  {clicks} clicks on {shoppers} result lists; waiting for the attribution window to close")

    def learned() -> float | None:
        version = api.metric("streamrec_model_version") or 0
        auc = api.metric("streamrec_model_progressive_auc")
        examples = api.metric("streamrec_label_examples_total") or 0
        return auc if version > 0 and examples >= shoppers * 10 * 0.9 else None

    wait_for(learned, timeout_s=60, interval_s=0.5)
    time.sleep(DEMO_SNAPSHOT_S + 0.5)  # the snapshot after the last examples
    _say(
        f"  ranker learned {api.metric('streamrec_model_examples_total') or 0:.0f} examples: progressive "
        f"log loss {api.metric('streamrec_model_progressive_logloss'):.3f}, "
        f"AUC {api.metric('streamrec_model_progressive_auc'):.3f}; "
        f"API ranks with model v{api.metric('streamrec_model_version'):.0f}"
    )


def _scenario(api: ApiClient, publisher: Publisher, products: int) -> None:
    items = catalog(products)
    _say(f"\n[3/5] Publishing a catalog of {len(items)} products to Kafka")
    started = time.monotonic()
    publisher.send_all(("product", item) for item in items)
    _wait_indexed(api, len(items), timeout_s=60 + products * 0.1)
    _say(f"  catalog searchable {time.monotonic() - started:.1f} s after publishing")

    _say("\n[4/5] Replaying background shoppers")
    background = background_traffic(items, n_users=40)
    publisher.send_all(background)
    _say(f"  {len(background)} searches, clicks and purchases from 40 shoppers")
    _learn_from_shoppers(api, publisher, items)

    _say(f"\n[5/5] One shopper, {SHOPPER!r}, before and after browsing {FOCUS}")
    _show("Search 'running shoes' (no keyword overlap needed)", api.json("/v1/search", q="running shoes", k=5))
    before = api.json("/v1/recommendations", user_id=SHOPPER, k=8)
    _show(f"Recommendations for {SHOPPER} BEFORE (new shopper)", before)
    events = shopper_events(items, SHOPPER, FOCUS, n_clicks=5)
    _say(f"\n  {SHOPPER} searches '{QUERIES[FOCUS]}', clicks {len(events) - 2} {FOCUS} products and buys one")
    sent = time.monotonic()
    publisher.send_all(events)

    def personalized() -> dict[str, Any] | None:
        # Once every event is in the served profile: the search alone can
        # land in an earlier batch than the clicks, and already personalizes.
        if api.profile_events(SHOPPER) < len(events):
            return None
        body = api.json("/v1/recommendations", user_id=SHOPPER, k=8)
        return body if body["personalized"] else None

    after = wait_for(personalized, timeout_s=30)
    _show(f"Recommendations for {SHOPPER} AFTER ({time.monotonic() - sent:.2f} s after the events)", after)
    share = sum(item["category"] == FOCUS for item in after["items"]) / max(len(after["items"]), 1)
    _say(
        f"\n  {share:.0%} of {SHOPPER}'s recommendations are now {FOCUS}; before: "
        f"{sum(i['category'] == FOCUS for i in before['items'])} of {len(before['items'])}"
    )


def run_demo(products: int, keep_running: bool, state_dir: Path) -> int:
    """Run the demo end to end; returns a process exit code."""
    if state_dir.exists():
        shutil.rmtree(state_dir)  # every demo starts from an empty broker and collection
    state_dir.mkdir(parents=True)
    kafka = LocalKafka(data_dir=state_dir / "kafka", port=free_port(), controller_port=free_port())
    api_port = free_port()
    system: AllInOne | None = None
    try:
        _say("[1/5] Starting a single-node Apache Kafka broker (KRaft)")
        kafka.start()
        _say(f"  broker at {kafka.bootstrap_servers}")
        env = {
            "STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "STREAMREC_MILVUS_URI": str((state_dir / "milvus.db").resolve()),
            "STREAMREC_DATA_DIR": str((state_dir / "worker").resolve()),
            "STREAMREC_WORKER_WEB_PORT": str(free_port()),
            # Short attribution window and frequent snapshots, so learning shows within the demo.
            "STREAMREC_ATTRIBUTION_WINDOW_S": str(DEMO_WINDOW_S),
            "STREAMREC_SNAPSHOT_INTERVAL_S": str(DEMO_SNAPSHOT_S),
            "STREAMREC_JOIN_TICK_S": "0.5",
        }
        _say("\n[2/5] Starting streamrec all-in-one (encoder, worker, API on Milvus Lite)")
        system = AllInOne(env, state_dir / "streamrec.log", api_port)
        started = time.monotonic()
        system.start()
        _say(f"  ready in {time.monotonic() - started:.1f} s at {system.api.base_url} (log: {state_dir}/streamrec.log)")
        publisher = Publisher(StreamSettings(kafka_bootstrap=kafka.bootstrap_servers))
        try:
            _scenario(system.api, publisher, products)
        finally:
            publisher.close()
        if keep_running:
            _say(f"\nThe system keeps running: try {system.api.base_url}/v1/search?q=trail+shoes -- Ctrl-C stops it.")
            while True:
                time.sleep(3600)
        _say("\nDemo finished; stopping.")
        return 0
    except KeyboardInterrupt:
        _say("\nInterrupted; stopping.")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        _say(f"\nDemo failed: {exc}")
        if system is not None:
            _say(system.log_tail())
        return 1
    finally:
        if system is not None:
            system.stop()
        kafka.stop()
