"""Time to ready after a restart, memory store against RocksDB, at a given history.

One broker and one Milvus Lite server in a temporary directory. For each
table store, a worker with its own app id finds ``--history`` records in
its ``profiles`` changelog (``--shoppers`` shoppers, one record per click,
as a worker writes them without batch folding; 384-dim vectors as with the
default model) and is started twice: the first start rebuilds its state
from the whole changelog, the second is the restart. Ready means ``/readyz``
answers 200 and the first recovery of the tables completed.

    python bench/restart.py [--history 100000] [--shoppers 10000] [--stores memory:// rocksdb://]

Prints a Markdown table; ``--out`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from streamrec.launcher import AllInOne, changelog_state, fill_changelog, isolated_env, profile_history, wait_for
from streamrec.localkafka import LocalKafka, free_port
from streamrec.localmilvus import LocalMilvus
from streams.settings import StreamSettings
from streams.topics import ensure_topics


def start_timed(worker: AllInOne, timeout_s: float = 900.0) -> float:
    """Start ``worker``; seconds until it is ready with its tables recovered."""
    started = time.monotonic()
    worker.start(timeout_s=timeout_s)
    wait_for(worker.api.recovered, timeout_s=timeout_s, interval_s=0.1)
    return time.monotonic() - started


def run_store(store: str, args: argparse.Namespace, root: Path, base_env: dict[str, str]) -> dict[str, Any]:
    """Fill one worker's changelog, start it twice; the figures of both starts."""
    name = f"bench-restart-{store.split(':', maxsplit=1)[0]}"
    env = {**base_env, **isolated_env(name, root / name), "STREAMREC_TABLE_STORE": store}
    settings = StreamSettings(kafka_bootstrap=base_env["STREAMREC_KAFKA_BOOTSTRAP"], app_id=name)
    ensure_topics(settings)
    filled_at = time.monotonic()
    records = fill_changelog(settings, "profiles", profile_history(args.shoppers, args.history))
    fill_s = time.monotonic() - filled_at
    result: dict[str, Any] = {"store": store, "history": records, "fill_s": round(fill_s, 1)}
    port = free_port()
    for start in ("first", "restart"):
        worker = AllInOne(env, root / f"{name}.log", port, "worker")
        try:
            seconds = start_timed(worker)
            recovered = worker.api.counter("streamrec_table_recovered_records_total", table="profiles")
        finally:
            code = worker.stop()
        if code != 0:
            raise RuntimeError(f"{name} exited with {code}:\n{worker.log_tail()}")
        result[f"{start}_ready_s"] = round(seconds, 1)
        result[f"{start}_recovered_records"] = int(recovered)
        print(f"{store} {start}: ready in {seconds:.1f} s, {recovered:.0f} profile records recovered", flush=True)
    result["shoppers"] = len(changelog_state(settings, "profiles"))
    return result


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=100_000, help="profile changelog records before the restart")
    parser.add_argument("--shoppers", type=int, default=10_000, help="distinct shoppers in that history")
    parser.add_argument("--stores", nargs="+", default=["memory://", "rocksdb://"], help="table stores to compare")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamrec-restart-") as tmp:
        root = Path(tmp)
        kafka = LocalKafka(data_dir=root / "kafka", port=free_port(), controller_port=free_port())
        milvus = LocalMilvus(root / "milvus" / "milvus.db", free_port())
        kafka.start()
        milvus.start()
        try:
            base_env = {"STREAMREC_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "STREAMREC_MILVUS_URI": milvus.uri}
            results = [run_store(store, args, root, base_env) for store in args.stores]
        finally:
            milvus.stop()
            kafka.stop()
    print()
    print("| store | history (records) | shoppers | first start: ready s / records read | restart: ready s / read |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| `{r['store']}` | {r['history']:,} | {r['shoppers']:,} "
            f"| {r['first_ready_s']} / {r['first_recovered_records']:,} "
            f"| {r['restart_ready_s']} / {r['restart_recovered_records']:,} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
