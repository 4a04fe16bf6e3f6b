"""The HTTP API: search, recommendations, similar items, health and metrics.

Bad parameters get a 400 with a JSON body naming the parameter; an
unavailable store gets a 503 with ``Retry-After``; nothing leaks a traceback.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from ranker.service import Recommender, Results
from ranker.settings import RankerSettings
from streamrec.errors import StreamrecError
from streamrec.ids import is_valid_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]

REQUEST_SECONDS = Histogram(
    "streamrec_api_request_seconds",
    "API request latency",
    ["endpoint", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

RECOMMENDER: web.AppKey[Recommender] = web.AppKey("recommender", Recommender)
SETTINGS: web.AppKey[RankerSettings] = web.AppKey("settings", RankerSettings)
READINESS: web.AppKey[ReadinessCheck] = web.AppKey("readiness")


class BadRequest(web.HTTPBadRequest):
    """A 400 whose body says which parameter is wrong and why."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(
            text=web.json_response({"error": "bad_request", "parameter": parameter, "detail": problem}).text,
            content_type="application/json",
        )


def _k(request: web.Request) -> int:
    settings = request.app[SETTINGS]
    raw = request.query.get("k", str(settings.default_k))
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest("k", f"{raw!r} is not an integer") from None
    if not 1 <= k <= settings.max_k:
        raise BadRequest("k", f"must be between 1 and {settings.max_k}")
    return k


def _text(request: web.Request, name: str, max_chars: int, required: bool) -> str | None:
    value = request.query.get(name, "").strip()
    if not value:
        if required:
            raise BadRequest(name, "is required")
        return None
    if len(value) > max_chars:
        raise BadRequest(name, f"is longer than {max_chars} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise BadRequest(name, "contains control characters")
    return value


def _id(request: web.Request, name: str, value: str | None) -> str | None:
    if value is not None and not is_valid_id(value):
        raise BadRequest(name, "must be 1-128 characters without control characters, quotes or backslashes")
    return value


# Enough for a cart or a page already shown, small enough for one URL.
MAX_EXCLUDE = 1000


def _exclude(request: web.Request) -> frozenset[str]:
    raw = request.query.get("exclude", "").strip()
    ids = [part.strip() for part in raw.split(",") if part.strip()] if raw else []
    if len(ids) > MAX_EXCLUDE:
        raise BadRequest("exclude", f"lists more than {MAX_EXCLUDE} product ids")
    for product_id in ids:
        _id(request, "exclude", product_id)
    return frozenset(ids)


def _path_id(request: web.Request, name: str) -> str:
    """The id in the route's ``{name}``, validated."""
    value = _id(request, name, request.match_info[name])
    assert value is not None  # a route variable is never missing
    return value


def _not_found(name: str, value: str) -> web.Response:
    return web.json_response({"error": "not_found", name: value}, status=404)


def _explain(request: web.Request) -> bool:
    raw = request.query.get("explain", "false").lower()
    if raw not in {"true", "false", "1", "0"}:
        raise BadRequest("explain", "must be true or false")
    return raw in {"true", "1"}


def _respond(results: Results, started: float, explain: bool, **fields: Any) -> web.Response:
    body = {
        **fields,
        "strategy": results.strategy,
        "personalized": results.personalized,
        "items": [item.to_json(explain) for item in results.items],
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
        **results.extra,
    }
    return web.json_response(body)


async def search(request: web.Request) -> web.Response:
    """GET /v1/search?q=&user_id=&k="""
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    query = _text(request, "q", settings.max_query_chars, required=True)
    assert query is not None  # required=True guarantees it
    user_id = _id(request, "user_id", _text(request, "user_id", 128, required=False))
    k = _k(request)
    results = await request.app[RECOMMENDER].search(query, user_id, k)
    return _respond(results, started, _explain(request), query=query, user_id=user_id)


async def recommendations(request: web.Request) -> web.Response:
    """GET /v1/recommendations?user_id=&k=&exclude=id,id"""
    started = time.perf_counter()
    user_id = _id(request, "user_id", _text(request, "user_id", 128, required=True))
    assert user_id is not None
    k = _k(request)
    results = await request.app[RECOMMENDER].recommend(user_id, k, _exclude(request))
    return _respond(results, started, _explain(request), user_id=user_id)


async def similar(request: web.Request) -> web.Response:
    """GET /v1/similar/{product_id}?k="""
    started = time.perf_counter()
    product_id = _path_id(request, "product_id")
    k = _k(request)
    results = await request.app[RECOMMENDER].similar(product_id, k)
    if results is None:
        return _not_found("product_id", product_id)
    return _respond(results, started, _explain(request), product_id=product_id)


async def user_profile(request: web.Request) -> web.Response:
    """GET /v1/users/{user_id}: the profile features the ranking uses (for support and debugging)."""
    user_id = _path_id(request, "user_id")
    user = await request.app[RECOMMENDER].profile(user_id)
    if user is None:
        return _not_found("user_id", user_id)
    return web.json_response({"user_id": user.user_id, "updated_at": user.updated_at, "features": user.features})


async def item_signal(request: web.Request) -> web.Response:
    """GET /v1/items/{product_id}: what shoppers did with a product (popularity, co-visited neighbours)."""
    product_id = _path_id(request, "product_id")
    row = await request.app[RECOMMENDER].item(product_id)
    if row is None:
        return _not_found("product_id", product_id)
    top = sorted(row.neighbors.items(), key=lambda kv: (-kv[1], kv[0]))
    return web.json_response(
        {"product_id": row.item_id, "popularity": row.popularity, "ref_ms": row.ref_ms, "neighbors": dict(top)}
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every dependency answers and state has been recovered."""
    try:
        detail = await request.app[READINESS]()
    except StreamrecError as exc:
        return web.json_response({"ready": False, "detail": str(exc)}, status=503)
    ready = bool(detail.pop("ready", True))
    return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by route and status; turn infrastructure errors into 503."""
    started = time.perf_counter()
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except StreamrecError as exc:
        status = 503 if exc.retriable else 500
        headers = {"Retry-After": "1"} if exc.retriable else {}
        return web.json_response({"error": type(exc).__name__, "detail": str(exc)}, status=status, headers=headers)
    finally:
        REQUEST_SECONDS.labels(endpoint, str(status)).observe(time.perf_counter() - started)


def create_health_app(readiness: ReadinessCheck) -> web.Application:
    """An application with only ``/healthz``, ``/readyz`` and ``/metrics``."""
    app = web.Application(middlewares=[observe])
    app[READINESS] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def create_api(recommender: Recommender, settings: RankerSettings, readiness: ReadinessCheck) -> web.Application:
    """The aiohttp application serving the API, health and metrics."""
    app = create_health_app(readiness)
    app[RECOMMENDER] = recommender
    app[SETTINGS] = settings
    app.router.add_get("/v1/search", search)
    app.router.add_get("/v1/recommendations", recommendations)
    app.router.add_get("/v1/similar/{product_id}", similar)
    app.router.add_get("/v1/users/{user_id}", user_profile)
    app.router.add_get("/v1/items/{product_id}", item_signal)
    return app
