"""The serving view: product and user vectors with their filterable fields.

``VectorStore`` is the interface; ``MilvusStore`` keeps it in Milvus (Lite
file or server, same code) and ``MemoryStore`` is the in-memory fake that the
same contract tests run against.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamrec.errors import StoreError

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ProductRow:
    """One product as served: its vector and the fields filters and features use."""

    product_id: str
    vector: Vector
    title: str
    category: str
    brand: str
    price: float
    in_stock: bool
    updated_at: int
    model: str


@dataclass(frozen=True, slots=True)
class UserRow:
    """One shopper as served: short- and long-term vectors and compact features.

    A zero vector means "no signal yet" (the user only touched products that
    were not embedded).
    """

    user_id: str
    short_vector: Vector
    long_vector: Vector
    features: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class ItemRow:
    """What shoppers did with one product, as served: decayed popularity and co-visited neighbours.

    Decayed values are stated as of ``ref_ms`` (event time); a reader brings
    them to another time with ``2 ** ((ref_ms - now_ms) / half_life_ms)``.
    """

    item_id: str
    popularity: float  # decayed weighted clicks and purchases
    neighbors: dict[str, float]  # co-visited product -> decayed co-visitation weight, the strongest few
    ref_ms: int


@dataclass(frozen=True, slots=True)
class PopularList:
    """The most popular products of one partition of the item stream, with decayed scores as of ``ref_ms``."""

    partition: int
    items: dict[str, float]
    ref_ms: int


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved product with its similarity to the query vector."""

    product: ProductRow
    similarity: float


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """Constraints on retrieved products."""

    in_stock_only: bool = True
    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    category: str | None = None


class VectorStore(Protocol):
    """Product and user vectors, item rows and popular lists; every call is blocking and thread-safe."""

    def upsert_products(self, rows: Sequence[ProductRow]) -> None:
        """Insert or replace products by id; the last row of an id wins."""

    def delete_products(self, product_ids: Sequence[str]) -> None:
        """Remove products; unknown ids are ignored."""

    def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductRow]:
        """The known products among ``product_ids``, by id."""

    def search_products(self, vector: Vector, k: int, where: ProductFilter) -> list[Hit]:
        """Up to ``k`` products most similar to ``vector``, best first."""

    def browse_products(self, limit: int, where: ProductFilter) -> list[ProductRow]:
        """Up to ``limit`` products matching ``where``, in no promised order."""

    def count_products(self) -> int:
        """How many products are stored."""

    def upsert_users(self, rows: Sequence[UserRow]) -> None:
        """Insert or replace users by id; the last row of an id wins."""

    def upsert_items(self, rows: Sequence[ItemRow]) -> None:
        """Insert or replace item rows by id; the last row of an id wins, a non-finite score fails the batch."""

    def get_items(self, item_ids: Sequence[str], *, neighbors: bool = True) -> dict[str, ItemRow]:
        """The known item rows among ``item_ids``, by id; without their neighbours (empty) unless ``neighbors``.

        A ranker reads a few hundred candidates' rows per request for their
        counts only; their neighbours are the bulk of a row.
        """

    def upsert_popular(self, lists: Sequence[PopularList]) -> None:
        """Insert or replace popular lists by partition; the last list of a partition wins (scores as for items)."""

    def popular_lists(self) -> list[PopularList]:
        """Every stored popular list, in partition order."""

    def get_user(self, user_id: str) -> UserRow | None:
        """The user, or None for an unknown (cold-start) user."""

    def close(self) -> None:
        """Release connections."""


def last_per_key(rows: Iterable[Any], key: str) -> list[Any]:
    """Keep the last row of each key, in first-seen order.

    Milvus misbehaves on duplicate primary keys inside one upsert batch, so
    every batch is deduplicated before it is written.

    >>> [r["id"] + r["v"] for r in last_per_key([{"id": "a", "v": "1"}, {"id": "a", "v": "2"}], "id")]
    ['a2']
    """
    latest: dict[str, Any] = {}
    for row in rows:
        latest[getattr(row, key) if not isinstance(row, dict) else row[key]] = row
    return list(latest.values())


def _require_finite(what: str, key: str | int, values: Iterable[float]) -> None:
    bad = next((value for value in values if not math.isfinite(value)), None)
    if bad is not None:
        raise StoreError(f"non-finite score in {what}", key=key, value=bad)


def check_items(rows: Sequence[ItemRow]) -> None:
    """Raise ``StoreError`` if any row holds a NaN or infinite score.

    Both stores check a whole batch before writing any of it. Milvus would
    keep NaN in a float field as it is and silently turn it into null inside
    JSON (measured on Milvus Lite 2.5), so a bad score must fail loudly here.
    """
    for row in rows:
        _require_finite("item row", row.item_id, [row.popularity, *row.neighbors.values()])


def check_popular(lists: Sequence[PopularList]) -> None:
    """Raise ``StoreError`` if any list holds a NaN or infinite score (see ``check_items``)."""
    for popular in lists:
        _require_finite("popular list", popular.partition, popular.items.values())


def _matches(row: ProductRow, where: ProductFilter) -> bool:
    return (
        (row.in_stock or not where.in_stock_only)
        and row.product_id not in where.exclude_ids
        and (where.category is None or row.category == where.category)
    )


class MemoryStore:
    """Brute-force in-memory store with the ``VectorStore`` contract."""

    def __init__(self) -> None:
        self._products: dict[str, ProductRow] = {}
        self._rows: list[ProductRow] = []
        self._matrix: npt.NDArray[np.float32] | None = None  # the products' vectors, rebuilt after a change
        self._position: dict[str, int] = {}  # product id -> its row in the matrix
        self._in_stock: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._categories: npt.NDArray[np.str_] = np.zeros(0, dtype=str)
        self._users: dict[str, UserRow] = {}
        # Stored rows own their dicts: they are copied on the way in and out,
        # so no caller can change what the store holds.
        self._items: dict[str, ItemRow] = {}
        self._popular: dict[int, PopularList] = {}
        self._lock = threading.Lock()

    def upsert_products(self, rows: Sequence[ProductRow]) -> None:
        with self._lock:
            self._products.update((row.product_id, row) for row in rows)
            self._matrix = None

    def delete_products(self, product_ids: Sequence[str]) -> None:
        with self._lock:
            for product_id in product_ids:
                self._products.pop(product_id, None)
            self._matrix = None

    def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductRow]:
        with self._lock:
            return {pid: self._products[pid] for pid in product_ids if pid in self._products}

    def search_products(self, vector: Vector, k: int, where: ProductFilter) -> list[Hit]:
        with self._lock:
            if self._matrix is None:
                # Stacked once per catalog change, not per search (the evaluation replay searches 100k times).
                self._rows = list(self._products.values())
                self._matrix = np.stack([row.vector for row in self._rows]) if self._rows else None
                self._position = {row.product_id: i for i, row in enumerate(self._rows)}
                self._in_stock = np.array([row.in_stock for row in self._rows], dtype=bool)
                self._categories = np.array([row.category for row in self._rows], dtype=str)
            rows, matrix, position = self._rows, self._matrix, self._position
            in_stock, categories = self._in_stock, self._categories
        if matrix is None:
            return []
        # The filter as masks over the whole matrix: copying the kept rows out
        # cost more than scoring every product.
        keep = in_stock.copy() if where.in_stock_only else np.ones(len(rows), dtype=bool)
        if where.category is not None:
            keep &= categories == where.category
        keep[[i for product_id in where.exclude_ids if (i := position.get(product_id)) is not None]] = False
        kept = np.flatnonzero(keep)
        scores = (matrix @ vector)[kept]
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rows[kept[i]], float(scores[i])) for i in order]

    def browse_products(self, limit: int, where: ProductFilter) -> list[ProductRow]:
        with self._lock:
            rows = list(self._products.values())
        return [row for row in rows if _matches(row, where)][:limit]

    def count_products(self) -> int:
        with self._lock:
            return len(self._products)

    def upsert_users(self, rows: Sequence[UserRow]) -> None:
        with self._lock:
            self._users.update((row.user_id, replace(row)) for row in rows)

    def get_user(self, user_id: str) -> UserRow | None:
        with self._lock:
            return self._users.get(user_id)

    def upsert_items(self, rows: Sequence[ItemRow]) -> None:
        check_items(rows)
        copies = [(row.item_id, replace(row, neighbors=dict(row.neighbors))) for row in rows]
        with self._lock:
            self._items.update(copies)

    def get_items(self, item_ids: Sequence[str], *, neighbors: bool = True) -> dict[str, ItemRow]:
        with self._lock:
            found = [self._items[item_id] for item_id in item_ids if item_id in self._items]
        return {row.item_id: replace(row, neighbors=dict(row.neighbors) if neighbors else {}) for row in found}

    def upsert_popular(self, lists: Sequence[PopularList]) -> None:
        check_popular(lists)
        copies = [(popular.partition, replace(popular, items=dict(popular.items))) for popular in lists]
        with self._lock:
            self._popular.update(copies)

    def popular_lists(self) -> list[PopularList]:
        with self._lock:
            found = [self._popular[partition] for partition in sorted(self._popular)]
        return [replace(popular, items=dict(popular.items)) for popular in found]

    def close(self) -> None:
        """Nothing to release."""
