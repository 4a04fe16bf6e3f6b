"""Milvus-specific behaviour: filter expressions and classifying failures as retriable or not."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from pymilvus import MilvusException

from ranker.milvus_store import MilvusStore, filter_expression
from ranker.settings import RankerSettings
from ranker.store import ProductFilter
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
