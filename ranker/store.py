"""The serving view: product and user vectors with their filterable fields.

``VectorStore`` is the interface; ``MilvusStore`` keeps it in Milvus (Lite
file or server, same code) and ``MemoryStore`` is the in-memory fake that the
same contract tests run against.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

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
    """Product and user vectors; every call is blocking and thread-safe."""

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
        self._users: dict[str, UserRow] = {}
        self._lock = threading.Lock()

    def upsert_products(self, rows: Sequence[ProductRow]) -> None:
        with self._lock:
            self._products.update((row.product_id, row) for row in rows)

    def delete_products(self, product_ids: Sequence[str]) -> None:
        with self._lock:
            for product_id in product_ids:
                self._products.pop(product_id, None)

    def get_products(self, product_ids: Sequence[str]) -> dict[str, ProductRow]:
        with self._lock:
            return {pid: self._products[pid] for pid in product_ids if pid in self._products}

    def search_products(self, vector: Vector, k: int, where: ProductFilter) -> list[Hit]:
        with self._lock:
            candidates = [row for row in self._products.values() if _matches(row, where)]
        if not candidates:
            return []
        scores = np.stack([row.vector for row in candidates]) @ vector
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(candidates[i], float(scores[i])) for i in order]

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

    def close(self) -> None:
        """Nothing to release."""
