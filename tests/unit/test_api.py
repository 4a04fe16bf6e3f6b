"""The HTTP API: results, parameter validation, health, readiness, metrics and store failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from ranker.api import create_api
from ranker.service import Recommender
from ranker.settings import RankerSettings
from ranker.store import Hit, ItemRow, MemoryStore, ProductFilter, ProductRow, UserRow, Vector
from streamrec.errors import StoreError, StoreUnavailable

Readiness = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Reply:
    """What the client saw."""

    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.text)


async def ready() -> dict[str, Any]:
    """A readiness check whose dependencies all answer."""
    return {"ready": True, "products": 10}


class FailingStore(MemoryStore):
    """A memory store whose searches fail with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def search_products(self, vector: Vector, k: int, where: ProductFilter) -> list[Hit]:
        raise self.error


@pytest.fixture
def make_app(catalog_rows: list[ProductRow], encoder: HashingTextEncoder) -> Iterator[Callable[..., web.Application]]:
    """Build the API over the catalog in a memory store (or the given store), with a readiness check."""
    encoders: list[AsyncEncoder] = []

    def make(store: MemoryStore | None = None, readiness: Readiness = ready) -> web.Application:
        store = store if store is not None else MemoryStore()
        store.upsert_products(catalog_rows)
        encoders.append(AsyncEncoder(encoder))
        return create_api(Recommender(store, encoders[-1], RankerSettings()), RankerSettings(), readiness)

    yield make
    for each in encoders:
        each.close()


def fetch(app: web.Application, *paths: str) -> list[Reply]:
    """GET each path from a test server running ``app``, in order."""

    async def run() -> list[Reply]:
        replies = []
        async with TestClient(TestServer(app)) as client:
            for path in paths:
                response = await client.get(path)
                replies.append(Reply(response.status, dict(response.headers), await response.text()))
        return replies

    return asyncio.run(run())


def test_search_returns_scored_items_and_timing(make_app: Callable[..., web.Application]) -> None:
    """/v1/search answers with ranked items, their scores and (explain=true) contributions, and its timing."""
    (reply,) = fetch(make_app(), "/v1/search?q=red+shoes&k=3&explain=true")
    assert reply.status == 200
    body = reply.json()
    assert (body["query"], body["user_id"], body["strategy"], body["personalized"]) == (
        "red shoes",
        None,
        "semantic",
        False,
    )
    assert len(body["items"]) == 3
    assert body["items"][0]["product_id"] == "shoe-red"
    for item in body["items"]:
        assert item["score"] == pytest.approx(sum(item["contributions"].values()), abs=1e-5)
    assert isinstance(body["took_ms"], float | int)
    assert body["took_ms"] >= 0
    assert len(body["request_id"]) == 32
    assert body["model_version"] == 0


def test_contributions_only_when_explain_is_asked(make_app: Callable[..., web.Application]) -> None:
    """Items carry contributions with explain=true and not by default; a bad explain value is a 400."""
    plain, explained, bad = fetch(
        make_app(), "/v1/search?q=red+shoes&k=3", "/v1/search?q=red+shoes&k=3&explain=1", "/v1/search?q=x&explain=maybe"
    )
    assert all("contributions" not in item for item in plain.json()["items"])
    assert all("contributions" in item for item in explained.json()["items"])
    assert (bad.status, bad.json()["parameter"]) == (400, "explain")


def test_recommendations_for_a_new_user_are_popular(make_app: Callable[..., web.Application]) -> None:
    """/v1/recommendations for an unknown user answers with non-personalized popular items."""
    (reply,) = fetch(make_app(), "/v1/recommendations?user_id=u-new&k=4")
    assert reply.status == 200
    body = reply.json()
    assert (body["user_id"], body["strategy"], body["personalized"]) == ("u-new", "popular", False)
    assert len(body["items"]) == 4


def test_recommendations_leave_out_excluded_products(
    make_app: Callable[..., web.Application], catalog_rows: list[ProductRow]
) -> None:
    """``exclude`` (comma-separated ids) keeps those products out; a bad id or too many ids is a 400 naming it."""
    everything = ",".join(row.product_id for row in catalog_rows[1:])
    shown, bad, many = fetch(
        make_app(),
        f"/v1/recommendations?user_id=u-new&k=4&exclude={everything}",
        '/v1/recommendations?user_id=u-new&exclude=a"b',
        "/v1/recommendations?user_id=u-new&exclude=" + ",".join(f"p{i}" for i in range(1001)),
    )
    assert [item["product_id"] for item in shown.json()["items"]] == [catalog_rows[0].product_id]
    assert (bad.status, bad.json()["parameter"]) == (400, "exclude")
    assert (many.status, many.json()["parameter"]) == (400, "exclude")


def test_item_signal_shows_popularity_and_neighbours(make_app: Callable[..., web.Application]) -> None:
    """/v1/items/{id} answers a touched product's popularity and neighbours, strongest first; 404 for the others."""
    store = MemoryStore()
    store.upsert_items([ItemRow("shoe-red", 2.5, {"belt": 0.5, "bag": 1.5}, 1000)])
    found, unknown = fetch(make_app(store), "/v1/items/shoe-red", "/v1/items/shoe-blue")
    assert found.json() == {
        "product_id": "shoe-red",
        "popularity": 2.5,
        "ref_ms": 1000,
        "neighbors": {"bag": 1.5, "belt": 0.5},
    }
    assert list(found.json()["neighbors"]) == ["bag", "belt"]
    assert (unknown.status, unknown.json()["error"]) == (404, "not_found")


def test_similar_returns_other_products(make_app: Callable[..., web.Application]) -> None:
    """/v1/similar/{id} answers with products like it, never itself."""
    (reply,) = fetch(make_app(), "/v1/similar/shoe-red?k=3")
    assert reply.status == 200
    body = reply.json()
    assert body["product_id"] == "shoe-red"
    assert "shoe-red" not in [item["product_id"] for item in body["items"]]


def test_user_profile_shows_the_features_ranking_uses(make_app: Callable[..., web.Application]) -> None:
    """/v1/users/{id} returns a known shopper's features and update time; an unknown shopper is a 404."""
    store = MemoryStore()
    zero = np.zeros(64, dtype=np.float32)
    store.upsert_users([UserRow("u1", zero, zero, {"categories": {"shoes": 1.0}, "events": 3}, 42)])
    known, unknown, bad = fetch(make_app(store), "/v1/users/u1", "/v1/users/nobody", "/v1/users/o%27brien")
    assert known.json() == {"user_id": "u1", "updated_at": 42, "features": {"categories": {"shoes": 1.0}, "events": 3}}
    assert (unknown.status, unknown.json()["error"]) == (404, "not_found")
    assert (bad.status, bad.json()["parameter"]) == (400, "user_id")


def test_similar_of_unknown_product_is_404(make_app: Callable[..., web.Application]) -> None:
    """/v1/similar of an unknown product is a 404 naming the product."""
    (reply,) = fetch(make_app(), "/v1/similar/unknown")
    assert reply.status == 404
    assert reply.json() == {"error": "not_found", "product_id": "unknown"}


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/search", "q"),
        ("/v1/search?q=", "q"),
        ("/v1/search?q=%20%20", "q"),
        ("/v1/search?q=" + "x" * 513, "q"),
        ("/v1/search?q=red%00shoes", "q"),
        ("/v1/search?q=red%1Bshoes", "q"),
        ("/v1/search?q=red%7Fshoes", "q"),
        ("/v1/search?q=red%C2%85shoes", "q"),
        ("/v1/search?q=shoes&user_id=u%01", "user_id"),
        ("/v1/search?q=shoes&user_id=" + "u" * 129, "user_id"),
        ("/v1/search?q=shoes&k=0", "k"),
        ("/v1/search?q=shoes&k=-1", "k"),
        ("/v1/search?q=shoes&k=abc", "k"),
        ("/v1/search?q=shoes&k=1.5", "k"),
        ("/v1/search?q=shoes&k=101", "k"),
        ("/v1/recommendations", "user_id"),
        ("/v1/recommendations?user_id=", "user_id"),
        ("/v1/recommendations?user_id=u1&k=abc", "k"),
        ("/v1/similar/shoe-red?k=0", "k"),
        ("/v1/recommendations?user_id=o%27brien", "user_id"),
        ("/v1/search?q=shoes&user_id=a%22b", "user_id"),
        ("/v1/similar/p%271", "product_id"),
    ],
)
def test_bad_parameters_get_400_naming_the_parameter(
    make_app: Callable[..., web.Application], path: str, parameter: str
) -> None:
    """A missing, malformed or out-of-range parameter is a 400 whose JSON body names it."""
    (reply,) = fetch(make_app(), path)
    assert reply.status == 400
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert (body["error"], body["parameter"]) == ("bad_request", parameter)
    assert body["detail"]


def test_k_at_max_k_is_accepted(make_app: Callable[..., web.Application]) -> None:
    """k equal to max_k is within range."""
    (reply,) = fetch(make_app(), f"/v1/search?q=shoes&k={RankerSettings().max_k}")
    assert reply.status == 200


def test_healthz_is_ok(make_app: Callable[..., web.Application]) -> None:
    """/healthz answers 200 while the process runs."""
    (reply,) = fetch(make_app(), "/healthz")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})


async def not_ready() -> dict[str, Any]:
    """A readiness check of a worker still recovering its state."""
    return {"ready": False, "state": "recovering"}


async def store_down() -> dict[str, Any]:
    """A readiness check whose store cannot be reached."""
    raise StoreUnavailable("milvus unreachable", operation="count_products")


@pytest.mark.parametrize(
    ("readiness", "status", "expected"),
    [
        (ready, 200, {"ready": True, "products": 10}),
        (not_ready, 503, {"ready": False, "state": "recovering"}),
        (store_down, 503, {"ready": False, "detail": "milvus unreachable (operation='count_products')"}),
    ],
    ids=["ready", "recovering", "store-unavailable"],
)
def test_readyz_reflects_the_readiness_check(
    make_app: Callable[..., web.Application], readiness: Readiness, status: int, expected: dict[str, Any]
) -> None:
    """/readyz is 200 only when the check says ready; not ready or a store error is 503."""
    (reply,) = fetch(make_app(readiness=readiness), "/readyz")
    assert (reply.status, reply.json()) == (status, expected)


def request_count(endpoint: str, status: str) -> float:
    """Observations of the API latency histogram for one endpoint and status."""
    value = REGISTRY.get_sample_value("streamrec_api_request_seconds_count", {"endpoint": endpoint, "status": status})
    return value or 0.0


def test_metrics_expose_request_latency_by_endpoint_and_status(make_app: Callable[..., web.Application]) -> None:
    """Every request is timed by route and status, and /metrics exposes the histogram."""
    ok, bad = request_count("/v1/search", "200"), request_count("/v1/search", "400")
    *_, metrics = fetch(make_app(), "/v1/search?q=shoes", "/v1/search", "/v1/search?q=shoes", "/metrics")
    assert (request_count("/v1/search", "200"), request_count("/v1/search", "400")) == (ok + 2, bad + 1)
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert 'streamrec_api_request_seconds_count{endpoint="/v1/search",status="200"}' in metrics.text


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (StoreUnavailable("milvus unreachable", operation="search_products"), 503, "1"),
        (StoreError("milvus call failed", operation="search_products"), 500, None),
    ],
    ids=["unavailable", "failed"],
)
def test_store_failures_become_503_or_500_without_traceback(
    make_app: Callable[..., web.Application], error: StoreError, status: int, retry_after: str | None
) -> None:
    """A retriable store failure is a 503 with Retry-After; a non-retriable one a 500 without it."""
    (reply,) = fetch(make_app(store=FailingStore(error)), "/v1/search?q=shoes")
    assert reply.status == status
    assert reply.headers.get("Retry-After") == retry_after
    assert reply.json()["error"] == type(error).__name__
    assert "Traceback" not in reply.text
