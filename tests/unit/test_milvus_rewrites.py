"""Milvus Lite rows stay visible while they are rewritten (versioned insert-then-delete)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ranker.milvus_store import MilvusStore
from ranker.settings import RankerSettings
from ranker.store import ProductFilter, ProductRow, UserRow


def test_readers_never_miss_a_row_that_is_being_rewritten(tmp_path: Path) -> None:
    """Reads racing rewrites of the same user and product always find exactly one of each."""
    store = MilvusStore(RankerSettings(milvus_uri=str(tmp_path / "m.db")), dim=8)
    vector = np.full(8, 1 / np.sqrt(8), dtype=np.float32)

    def user(i: int) -> UserRow:
        return UserRow("u1", vector, vector, {"i": i}, i)

    def product(i: int) -> ProductRow:
        return ProductRow("p1", vector, f"title {i}", "c", "b", 1.0, True, i, "m")

    store.upsert_users([user(0)])
    store.upsert_products([product(0)])
    stop = threading.Event()
    writes = 0

    def rewrite() -> None:
        nonlocal writes
        while not stop.is_set():
            writes += 1
            store.upsert_users([user(writes)])
            store.upsert_products([product(writes)])

    writer = threading.Thread(target=rewrite)
    writer.start()
    misses, reads = 0, 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            reads += 1
            found_user = store.get_user("u1")
            found = store.get_products(["p1"])
            hits = store.search_products(vector, 5, ProductFilter())
            misses += (found_user is None) + ("p1" not in found) + (len(hits) != 1)
    finally:
        stop.set()
        writer.join()
        store.close()
    assert writes > 10, "the writer really raced the readers"
    assert reads > 10
    assert misses == 0
