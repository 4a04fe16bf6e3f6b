"""``VectorStore`` on Milvus: Milvus Lite (a local file) or a server URI.

Reads that must see the latest writes use Strong consistency; every call has
an explicit timeout, and failures are classified as retriable
(``StoreUnavailable``) or not (``StoreError``).

Rows are versioned: a write inserts ``<id>#<version>`` and then deletes the
older versions of those ids. Milvus Lite's ``upsert`` deletes before it
inserts, and a read in between finds nothing (measured: a quarter of reads
racing a rewrite of the same user saw it missing). With insert-then-delete a
reader sees the old row, the new row or both, never neither; readers keep the
newest version of each id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
from prometheus_client import Histogram
from pymilvus import DataType, MilvusClient, MilvusException

from ranker.settings import RankerSettings
from ranker.store import (
    Hit,
    ItemRow,
    PopularList,
    ProductFilter,
    ProductRow,
    UserRow,
    Vector,
    check_items,
    check_popular,
    last_per_key,
)
from streamrec.errors import StoreError, StoreUnavailable

T = TypeVar("T")

MILVUS_SECONDS = Histogram(
    "streamrec_milvus_call_seconds",
    "Latency of Milvus calls",
    ["operation", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# Rows per insert call. Milvus Lite's cost per row grows with the call's
# size: 2,000 user rows (two 384-dim vectors each) took 1.4-1.6 s in one
# call and 0.56-0.65 s in calls of 500, into a collection of 50,000 users.
INSERT_CHUNK_ROWS = 500

_ITEM_FIELDS = ["item_id", "popularity", "neighbors", "ref_ms", "version"]
_COUNT_FIELDS = [name for name in _ITEM_FIELDS if name != "neighbors"]  # rows read for their counts only
# Item rows and popular lists share one collection, told apart by ``kind``;
# every read and every delete of old versions filters on it, so a product
# whose id happens to be "~popular/0" never meets partition 0's list.
_ITEM, _POPULAR = "item", "popular"
_POPULAR_PREFIX = "~popular/"
_PRODUCT_FIELDS = ["product_id", "title", "category", "brand", "price", "in_stock", "updated_at", "model"]
_RETRIABLE_WORDS = ("unavailable", "deadline", "timeout", "timed out", "connect", "not ready", "rate limit")
# gRPC failures pymilvus lets through unwrapped (a server that stopped
# answering gives DEADLINE_EXCEEDED, one that is gone UNAVAILABLE).
_RETRIABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"})


def _grpc_status(exc: BaseException) -> str | None:
    """The gRPC status name of an error raised by a gRPC call (``grpc.RpcError``), else None."""
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    status = code()
    name = getattr(status, "name", None)
    return name if isinstance(name, str) else None


def _quote(value: str) -> str:
    # Milvus reads \" and \\ escapes but not \uXXXX, so non-ASCII must stay
    # literal or a filter on "café" matches nothing.
    return json.dumps(value, ensure_ascii=False)


def _json(value: Any) -> str:
    """A JSON field's value as JSON text: pymilvus passes text through, but walks a dict element by element."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _newest(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The highest-version row of each id, in first-seen order."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = best.get(row[key])
        if seen is None or row["version"] > seen["version"]:
            best[row[key]] = row
    return list(best.values())


def filter_expression(where: ProductFilter) -> str:
    """Milvus boolean expression for a product filter.

    >>> filter_expression(ProductFilter(exclude_ids=frozenset({"p1"})))
    'in_stock == true and product_id not in ["p1"]'
    """
    clauses = []
    if where.in_stock_only:
        clauses.append("in_stock == true")
    if where.exclude_ids:
        clauses.append(f"product_id not in [{', '.join(_quote(i) for i in sorted(where.exclude_ids))}]")
    if where.category is not None:
        clauses.append(f"category == {_quote(where.category)}")
    return " and ".join(clauses)


def _weights(value: Any) -> dict[str, float]:
    """A JSON object of scores as read back from Milvus."""
    return {str(key): float(weight) for key, weight in (value or {}).items()}


def _item_record(kind: str, item_id: str, popularity: float, scores: dict[str, float], ref_ms: int) -> dict[str, Any]:
    """A row of the items collection, before ``_write`` adds its version."""
    return {
        "item_id": item_id,
        "kind": kind,
        "popularity": float(popularity),
        # float(): a numpy scalar would not serialise as JSON. A Milvus server
        # rejects a JSON value over 64 KB (its default limit; Milvus Lite 2.5
        # accepted 11 MB in a probe, so only production would show it), which
        # is why writers keep at most ~100 neighbours or popular products:
        # 100 ids of 128 characters with their weights are about 16 KB.
        "neighbors": _json({key: float(weight) for key, weight in scores.items()}),
        "ref_ms": int(ref_ms),
        "_unused": [0.0, 0.0],
    }


class MilvusStore:
    """Products, users and item rows in three Milvus collections keyed by their ids."""

    def __init__(self, settings: RankerSettings, dim: int, client: MilvusClient | None = None) -> None:
        self._settings = settings
        self._dim = dim
        self._timeout = settings.milvus_timeout_s
        if client is None:
            uri = settings.milvus_uri
            if "://" not in uri:
                Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            client = MilvusClient(uri=uri, token=settings.milvus_token, timeout=self._timeout)
        self._client = client
        self._version = 0
        self._version_lock = threading.Lock()
        self._products = settings.products_collection
        self._users = settings.users_collection
        self._items = settings.items_collection
        self._call("ensure", self._ensure_collections)

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = fn()
            outcome = "ok"
            return result
        except MilvusException as exc:
            message = str(exc).lower()
            error = StoreUnavailable if any(w in message for w in _RETRIABLE_WORDS) else StoreError
            raise error("milvus call failed", operation=operation, cause=str(exc)) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise StoreUnavailable("milvus unreachable", operation=operation, cause=str(exc)) from exc
        except Exception as exc:
            status = _grpc_status(exc)
            if status is None:
                raise
            error = StoreUnavailable if status in _RETRIABLE_CODES else StoreError
            raise error("milvus call failed", operation=operation, status=status) from exc
        finally:
            MILVUS_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)

    def _versioned_schema(self, key: str) -> Any:
        """A schema keyed by ``<key>#<version>`` rows (see the module docstring)."""
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row_id", DataType.VARCHAR, is_primary=True, max_length=160)
        schema.add_field(key, DataType.VARCHAR, max_length=128)
        schema.add_field("version", DataType.INT64)
        return schema

    def _ensure_collections(self) -> None:
        client = self._client
        if not client.has_collection(self._products, timeout=self._timeout):
            schema = self._versioned_schema("product_id")
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
            schema.add_field("title", DataType.VARCHAR, max_length=1024)
            schema.add_field("category", DataType.VARCHAR, max_length=128)
            schema.add_field("brand", DataType.VARCHAR, max_length=128)
            schema.add_field("price", DataType.FLOAT)
            schema.add_field("in_stock", DataType.BOOL)
            schema.add_field("updated_at", DataType.INT64)
            schema.add_field("model", DataType.VARCHAR, max_length=128)
            index = client.prepare_index_params()
            index.add_index("vector", index_type=self._settings.milvus_index, metric_type="IP", **self._index_args())
            client.create_collection(
                self._products, schema=schema, index_params=index, consistency_level="Strong", timeout=self._timeout
            )
        if not client.has_collection(self._users, timeout=self._timeout):
            schema = self._versioned_schema("user_id")
            schema.add_field("short_vector", DataType.FLOAT_VECTOR, dim=self._dim)
            schema.add_field("long_vector", DataType.FLOAT_VECTOR, dim=self._dim)
            schema.add_field("features", DataType.JSON)
            schema.add_field("updated_at", DataType.INT64)
            index = client.prepare_index_params()
            # Users are read by id, never searched; FLAT costs nothing to build.
            index.add_index("short_vector", index_type="FLAT", metric_type="IP")
            index.add_index("long_vector", index_type="FLAT", metric_type="IP")
            client.create_collection(
                self._users, schema=schema, index_params=index, consistency_level="Strong", timeout=self._timeout
            )
        if not client.has_collection(self._items, timeout=self._timeout):
            schema = self._versioned_schema("item_id")
            schema.add_field("kind", DataType.VARCHAR, max_length=16)
            # DOUBLE, not FLOAT: popularity reads back exactly as written, like
            # the neighbour weights (JSON numbers are doubles).
            schema.add_field("popularity", DataType.DOUBLE)
            schema.add_field("neighbors", DataType.JSON)
            schema.add_field("ref_ms", DataType.INT64)
            # Items are read by id, never searched, but a Milvus server (since
            # 2.4.4, milvus-io/milvus#33853) refuses a collection without a
            # vector field, though Milvus Lite 2.5 accepts one. A 2-dim zero
            # vector with a FLAT index (nothing to build) is the cheapest pass.
            schema.add_field("_unused", DataType.FLOAT_VECTOR, dim=2)
            index = client.prepare_index_params()
            index.add_index("_unused", index_type="FLAT", metric_type="L2")
            client.create_collection(
                self._items, schema=schema, index_params=index, consistency_level="Strong", timeout=self._timeout
            )
        for name in (self._products, self._users, self._items):
            client.load_collection(name, timeout=self._timeout)

    def _index_args(self) -> dict[str, Any]:
        kind = self._settings.milvus_index
        if kind == "IVF_FLAT":
            return {"params": {"nlist": 128}}
        if kind == "HNSW":
            return {"params": {"M": 16, "efConstruction": 200}}
        return {}

    def _search_params(self) -> dict[str, Any]:
        kind = self._settings.milvus_index
        if kind == "IVF_FLAT":
            return {"metric_type": "IP", "params": {"nprobe": 16}}
        if kind == "HNSW":
            return {"metric_type": "IP", "params": {"ef": 128}}
        return {"metric_type": "IP"}

    def _next_version(self) -> int:
        # Strictly increasing within this process; across processes the one
        # writer per key rule (partitioning by id) keeps versions ordered.
        with self._version_lock:
            self._version = max(time.time_ns(), self._version + 1)
            return self._version

    def _write(self, operation: str, collection: str, key: str, data: list[dict[str, Any]], scope: str = "") -> None:
        """Insert new versions of rows, then delete the versions they replace (among the rows ``scope`` selects)."""
        if not data:
            return
        version = self._next_version()
        for row in data:
            row["row_id"] = f"{row[key]}#{version}"
            row["version"] = version
        ids = ", ".join(_quote(row[key]) for row in data)
        replaced = f"{key} in [{ids}] and version < {version}" + (f" and {scope}" if scope else "")
        for start in range(0, len(data), INSERT_CHUNK_ROWS):
            chunk = data[start : start + INSERT_CHUNK_ROWS]
            self._call(operation, lambda: self._client.insert(collection, chunk, timeout=self._timeout))  # noqa: B023
        self._call(operation, lambda: self._client.delete(collection, filter=replaced, timeout=self._timeout))

    def upsert_products(self, rows: Sequence[ProductRow]) -> None:
        data = [
            {
                "product_id": row.product_id,
                "vector": row.vector.tolist(),
                "title": row.title[:1024],
                "category": row.category,
                "brand": row.brand,
                "price": row.price,
                "in_stock": row.in_stock,
                "updated_at": row.updated_at,
                "model": row.model,
            }
            for row in last_per_key(rows, "product_id")
        ]
        self._write("upsert_products", self._products, "product_id", data)

    def delete_products(self, product_ids: Sequence[str]) -> None:
        ids = ", ".join(_quote(i) for i in sorted(set(product_ids)))
        if ids:
            self._call(
                "delete_products",
                lambda: self._client.delete(self._products, filter=f"product_id in [{ids}]", timeout=self._timeout),
            )

    def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductRow]:
        ids = ", ".join(_quote(i) for i in sorted(set(product_ids)))
        if not ids:
            return {}
        rows = self._call(
            "get_products",
            lambda: self._client.query(
                self._products,
                filter=f"product_id in [{ids}]",
                output_fields=[*_PRODUCT_FIELDS, "vector", "version"],
                timeout=self._timeout,
            ),
        )
        return {
            row["product_id"]: self._product(row, np.asarray(row["vector"], dtype=np.float32))
            for row in _newest(rows, "product_id")
        }

    def search_products(self, vector: Vector, k: int, where: ProductFilter) -> list[Hit]:
        # Ask for more than k: while a product is being rewritten both of its
        # versions can match, and only the better one is kept.
        limit = min(2 * k, 16_384)
        results = self._call(
            "search_products",
            lambda: self._client.search(
                self._products,
                data=[vector.tolist()],
                anns_field="vector",
                filter=filter_expression(where),
                limit=limit,
                output_fields=_PRODUCT_FIELDS,
                search_params=self._search_params(),
                timeout=self._timeout,
            ),
        )
        empty = np.zeros(0, dtype=np.float32)
        hits: dict[str, Hit] = {}
        for hit in results[0]:
            product = self._product(hit["entity"], empty)
            hits.setdefault(product.product_id, Hit(product, float(hit["distance"])))
        return list(hits.values())[:k]

    def browse_products(self, limit: int, where: ProductFilter) -> list[ProductRow]:
        rows = self._call(
            "browse_products",
            lambda: self._client.query(
                self._products,
                filter=filter_expression(where) or 'product_id != ""',
                output_fields=[*_PRODUCT_FIELDS, "version"],
                limit=min(2 * limit, 16_384),
                timeout=self._timeout,
            ),
        )
        empty = np.zeros(0, dtype=np.float32)
        return [self._product(row, empty) for row in _newest(rows, "product_id")][:limit]

    @staticmethod
    def _product(row: dict[str, Any], vector: Vector) -> ProductRow:
        return ProductRow(
            product_id=row["product_id"],
            vector=vector,
            title=row["title"],
            category=row["category"],
            brand=row["brand"],
            price=float(row["price"]),
            in_stock=bool(row["in_stock"]),
            updated_at=int(row["updated_at"]),
            model=row["model"],
        )

    def count_products(self) -> int:
        # Counts rows: a product caught mid-rewrite counts twice for a moment.
        rows = self._call(
            "count_products",
            lambda: self._client.query(self._products, filter="", output_fields=["count(*)"], timeout=self._timeout),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def upsert_users(self, rows: Sequence[UserRow]) -> None:
        data = [
            {
                "user_id": row.user_id,
                "short_vector": row.short_vector.tolist(),
                "long_vector": row.long_vector.tolist(),
                "features": _json(row.features),
                "updated_at": row.updated_at,
            }
            for row in last_per_key(rows, "user_id")
        ]
        self._write("upsert_users", self._users, "user_id", data)

    def get_user(self, user_id: str) -> UserRow | None:
        rows = self._call(
            "get_user",
            lambda: self._client.query(
                self._users,
                filter=f"user_id == {_quote(user_id)}",
                output_fields=["user_id", "short_vector", "long_vector", "features", "updated_at", "version"],
                timeout=self._timeout,
            ),
        )
        newest = _newest(rows, "user_id")
        if not newest:
            return None
        row = newest[0]
        return UserRow(
            user_id=row["user_id"],
            short_vector=np.asarray(row["short_vector"], dtype=np.float32),
            long_vector=np.asarray(row["long_vector"], dtype=np.float32),
            features=dict(row["features"] or {}),
            updated_at=int(row["updated_at"]),
        )

    def upsert_items(self, rows: Sequence[ItemRow]) -> None:
        check_items(rows)
        data = [
            _item_record(_ITEM, row.item_id, row.popularity, row.neighbors, row.ref_ms)
            for row in last_per_key(rows, "item_id")
        ]
        self._write("upsert_items", self._items, "item_id", data, scope=f'kind == "{_ITEM}"')

    def get_items(self, item_ids: Sequence[str], *, neighbors: bool = True) -> dict[str, ItemRow]:
        ids = ", ".join(_quote(i) for i in sorted(set(item_ids)))
        if not ids:
            return {}
        rows = self._call(
            "get_items",
            lambda: self._client.query(
                self._items,
                filter=f'kind == "{_ITEM}" and item_id in [{ids}]',
                output_fields=_ITEM_FIELDS if neighbors else _COUNT_FIELDS,
                timeout=self._timeout,
            ),
        )
        return {
            row["item_id"]: ItemRow(
                item_id=row["item_id"],
                popularity=float(row["popularity"]),
                neighbors=_weights(row["neighbors"]) if neighbors else {},
                ref_ms=int(row["ref_ms"]),
            )
            for row in _newest(rows, "item_id")
        }

    def upsert_popular(self, lists: Sequence[PopularList]) -> None:
        check_popular(lists)
        data = [
            _item_record(_POPULAR, f"{_POPULAR_PREFIX}{popular.partition}", 0.0, popular.items, popular.ref_ms)
            for popular in last_per_key(lists, "partition")
        ]
        self._write("upsert_popular", self._items, "item_id", data, scope=f'kind == "{_POPULAR}"')

    def popular_lists(self) -> list[PopularList]:
        rows = self._call(
            "popular_lists",
            lambda: self._client.query(
                self._items,
                filter=f'kind == "{_POPULAR}"',
                output_fields=_ITEM_FIELDS,
                # One list per partition of the item stream (two while one is
                # rewritten): far below Milvus's 16,384 cap on a query.
                limit=16_384,
                timeout=self._timeout,
            ),
        )
        lists = [
            PopularList(
                partition=int(row["item_id"].removeprefix(_POPULAR_PREFIX)),
                items=_weights(row["neighbors"]),
                ref_ms=int(row["ref_ms"]),
            )
            for row in _newest(rows, "item_id")
        ]
        return sorted(lists, key=lambda popular: popular.partition)

    def close(self) -> None:
        self._client.close()
