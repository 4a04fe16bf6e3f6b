"""Milvus-specific behaviour: filter expressions and classifying failures as retriable or not."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY
from pymilvus import MilvusException

from ranker.milvus_store import INSERT_CHUNK_ROWS, MilvusStore, filter_expression
from ranker.settings import RankerSettings
from ranker.store import ProductFilter, UserRow
from streamrec.errors import StoreError, StoreUnavailable


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (ProductFilter(), "in_stock == true"),
        (ProductFilter(in_stock_only=False), ""),
        (ProductFilter(in_stock_only=False, exclude_ids=frozenset({"b", "a"})), 'product_id not in ["a", "b"]'),
        (ProductFilter(in_stock_only=False, category="shoes"), 'category == "shoes"'),
        (ProductFilter(in_stock_only=False, category='kids "xl" \\'), 'category == "kids \\"xl\\" \\\\"'),
        (ProductFilter(in_stock_only=False, category="sacs-à-dos"), 'category == "sacs-à-dos"'),
        (
            ProductFilter(exclude_ids=frozenset({"p-é"}), category="shoes"),
            'in_stock == true and product_id not in ["p-é"] and category == "shoes"',
        ),
    ],
    ids=["default", "no-constraints", "exclude-sorted", "category", "escaped-quotes", "utf8-literal", "all-three"],
)
def test_filter_expression(where: ProductFilter, expected: str) -> None:
    """Filters become Milvus expressions with quoted, escaped (but not \\u-escaped) string literals."""
    assert filter_expression(where) == expected


class FailingClient:
    """A MilvusClient whose collections exist but whose every data call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def has_collection(self, name: str, timeout: float | None = None) -> bool:
        return True

    def load_collection(self, name: str, timeout: float | None = None) -> None:
        """Collections are always loaded."""

    def query(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise self.error


class RpcFailure(grpc.RpcError):
    """A gRPC call failure as pymilvus lets it through (e.g. a server that stopped answering)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED), StoreUnavailable),
        (RpcFailure(grpc.StatusCode.UNAVAILABLE), StoreUnavailable),
        (RpcFailure(grpc.StatusCode.INVALID_ARGUMENT), StoreError),
        (MilvusException(message="service unavailable"), StoreUnavailable),
        (MilvusException(message="context deadline exceeded"), StoreUnavailable),
        (MilvusException(message="rate limit exceeded"), StoreUnavailable),
        (TimeoutError("timed out"), StoreUnavailable),
        (ConnectionRefusedError("refused"), StoreUnavailable),
        (MilvusException(message="collection not found"), StoreError),
        (MilvusException(message="invalid expression"), StoreError),
    ],
    ids=[
        "grpc-deadline",
        "grpc-unavailable",
        "grpc-invalid",
        "unavailable",
        "deadline",
        "rate-limit",
        "timeout",
        "connection",
        "not-found",
        "bad-expression",
    ],
)
def test_failures_are_classified_as_retriable_or_not(error: Exception, expected: type[StoreError]) -> None:
    """Transient Milvus failures raise the retriable StoreUnavailable; others a non-retriable StoreError."""
    store = MilvusStore(RankerSettings(), dim=8, client=FailingClient(error))
    labels = {"operation": "count_products", "outcome": "error"}
    errors_before = REGISTRY.get_sample_value("streamrec_milvus_call_seconds_count", labels) or 0.0
    with pytest.raises(StoreError) as raised:
        store.count_products()
    assert type(raised.value) is expected
    assert raised.value.retriable is (expected is StoreUnavailable)
    assert raised.value.context["operation"] == "count_products"
    assert raised.value.__cause__ is error
    assert REGISTRY.get_sample_value("streamrec_milvus_call_seconds_count", labels) == errors_before + 1


class RecordingClient(FailingClient):
    """A MilvusClient that records the writes it is given."""

    def __init__(self) -> None:
        super().__init__(AssertionError("no reads expected"))
        self.calls: list[tuple[str, int | str]] = []

    def insert(self, collection: str, data: list[dict[str, Any]], timeout: float | None = None) -> None:
        self.calls.append(("insert", len(data)))

    def delete(self, collection: str, filter: str = "", timeout: float | None = None) -> None:
        self.calls.append(("delete", filter))


def test_large_writes_are_inserted_in_chunks_before_the_old_versions_are_deleted() -> None:
    """Rows go in calls of at most INSERT_CHUNK_ROWS; the old versions of all of them are deleted once, after."""
    client = RecordingClient()
    store = MilvusStore(RankerSettings(), dim=4, client=client)  # type: ignore[arg-type]
    count = INSERT_CHUNK_ROWS * 2 + 7
    store.upsert_users([UserRow(f"u{i}", np.ones(4, np.float32), np.ones(4, np.float32), {}, 1) for i in range(count)])
    inserts = [size for kind, size in client.calls if kind == "insert"]
    assert inserts == [INSERT_CHUNK_ROWS, INSERT_CHUNK_ROWS, 7]
    assert [kind for kind, _ in client.calls] == ["insert", "insert", "insert", "delete"]
    deleted = str(client.calls[-1][1])
    assert '"u0"' in deleted
    assert f'"u{count - 1}"' in deleted
