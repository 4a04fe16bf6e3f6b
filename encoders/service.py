"""The encoder HTTP service: ``POST /v1/embed`` behind a dynamic batcher.

The listener opens at once and the model loads in the background, so
liveness answers during a long load while ``/readyz`` (and ``/v1/embed``,
with 503) say "not yet". A model that fails to load makes ``/healthz``
fail too: nothing will fix it but a restart.

Answers: 200 with vectors; 400 naming the bad field; 413 for a body over
the size limit; 503 with ``Retry-After`` while loading, after a failed load,
while shutting down or when the queue is full; 500 when a forward pass
fails. No traceback is ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encoders.batcher import DynamicBatcher, QueueFull
from encoders.metrics import REQUESTS
from encoders.registry import LoadedModel, load_model
from encoders.runner import AsyncEncoder
from encoders.settings import EncoderSettings
from encoders.wire import Invalid, encode_vectors, parse_embed_request
from streamrec.errors import StreamrecError

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Retry-After on 503: a second is several batches on a CPU and many on a GPU.
RETRY_AFTER_S = "1"
# JSON may escape a character into six bytes (\uXXXX); the rest is the envelope.
_BYTES_PER_CHAR = 6
_ENVELOPE_BYTES = 64 * 1024


def _body_limit(settings: EncoderSettings) -> int:
    """Largest body a request within the text limits can need."""
    return settings.max_request_texts * settings.max_text_chars * _BYTES_PER_CHAR + _ENVELOPE_BYTES


def _warmup_texts(count: int) -> list[str]:
    """Texts of growing length: the first passes allocate and (on CUDA) pick kernels."""
    return [" ".join(["warm up the encoder"] * (1 + i % 8)) for i in range(count)]


@dataclass
class _Service:
    """State of one service: the model once loaded, its batcher, readiness."""

    settings: EncoderSettings
    load: Callable[[], LoadedModel]
    model: LoadedModel | None = None
    batcher: DynamicBatcher | None = None
    runner: AsyncEncoder | None = None
    failure: str | None = None
    stopping: bool = False
    _loading: asyncio.Task[None] | None = field(default=None, repr=False)

    async def on_startup(self, app: web.Application) -> None:
        self._loading = asyncio.get_running_loop().create_task(self._load(), name="encoder-load")

    async def _load(self) -> None:
        started = time.perf_counter()
        runner: AsyncEncoder | None = None
        try:
            model = await asyncio.to_thread(self.load)
            runner = AsyncEncoder(model.encoder)
            await runner.encode(_warmup_texts(self.settings.max_batch_size), caller="warmup")
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("encoder model failed to load")
            if runner is not None:
                runner.close()
            return
        self.model, self.runner = model, runner
        s = self.settings
        self.batcher = DynamicBatcher(runner, s.max_batch_size, s.max_wait_ms / 1000, s.max_queue_texts)
        self.batcher.start()
        log.info(
            "encoder ready: model=%s version=%s dim=%d device=%s precision=%s in %.1fs",
            model.name,
            model.version,
            model.dim,
            model.device,
            model.precision,
            time.perf_counter() - started,
        )

    async def on_shutdown(self, app: web.Application) -> None:
        # Not ready from here on, so load balancers drain us; requests in
        # flight still finish (the batcher stops only at cleanup).
        self.stopping = True

    async def on_cleanup(self, app: web.Application) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self.batcher is not None:
            await self.batcher.close()
        if self.runner is not None:
            self.runner.close()

    def info(self) -> dict[str, Any]:
        """What a client needs to know about the model and the limits."""
        assert self.model is not None
        return {
            "model": self.model.name,
            "version": self.model.version,
            "dim": self.model.dim,
            "device": self.model.device,
            "precision": self.model.precision,
            "max_request_texts": self.settings.max_request_texts,
            "max_text_chars": self.settings.max_text_chars,
        }


SERVICE: web.AppKey[_Service] = web.AppKey("encoder_service", _Service)


def _error(status: int, outcome: str, error: str, detail: str, **fields: Any) -> web.Response:
    REQUESTS.labels(outcome).inc()
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return web.json_response({"error": error, "detail": detail, **fields}, status=status, headers=headers)


def _serving(service: _Service) -> tuple[LoadedModel, DynamicBatcher] | web.Response:
    """The model and batcher, or the 503 that says why there are none."""
    if service.failure is not None:
        # Unavailable, not a bad request: another replica (or this one after
        # the restart its failing /healthz brings) can answer.
        return _error(503, "unavailable", "model_failed", service.failure)
    if service.stopping:
        return _error(503, "unavailable", "shutting_down", "the encoder service is stopping")
    if service.model is None or service.batcher is None:
        return _error(503, "unavailable", "loading", "the model is still loading")
    return service.model, service.batcher


async def embed(request: web.Request) -> web.Response:
    """POST /v1/embed: texts in, L2-normalised vectors out."""
    service = request.app[SERVICE]
    serving = _serving(service)
    if isinstance(serving, web.Response):
        return serving
    model, batcher = serving
    settings = service.settings
    try:
        body = json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "bad_request", "too_large", f"body is over {_body_limit(settings)} bytes")
    except (ValueError, RecursionError):
        return _error(400, "bad_request", "bad_request", "body is not valid JSON", field="body")
    parsed = parse_embed_request(body, settings.max_request_texts, settings.max_text_chars)
    if isinstance(parsed, Invalid):
        return _error(400, "bad_request", "bad_request", parsed.detail, field=parsed.field)
    try:
        vectors = await batcher.embed(parsed.texts)
    except QueueFull as exc:
        return _error(503, "overloaded", "overloaded", str(exc))
    except StreamrecError as exc:
        status, outcome = (503, "unavailable") if exc.retriable else (500, "error")
        return _error(status, outcome, type(exc).__name__, str(exc))
    REQUESTS.labels("ok").inc()
    return web.json_response(
        {
            "model": model.name,
            "version": model.version,
            "dim": model.dim,
            "count": len(parsed.texts),
            "encoding": parsed.encoding,
            "vectors": encode_vectors(vectors, parsed.encoding),
        }
    )


async def model_info(request: web.Request) -> web.Response:
    """GET /v1/model: name, version, dimension, device and request limits; 503 until loaded."""
    service = request.app[SERVICE]
    serving = _serving(service)
    return serving if isinstance(serving, web.Response) else web.json_response(service.info())


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers, and its model has not failed to load."""
    failure = request.app[SERVICE].failure
    if failure is not None:
        return web.json_response({"status": "failed", "detail": failure}, status=500)
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the model is loaded and warmed up, and the service is not stopping."""
    service = request.app[SERVICE]
    if service.batcher is None or service.stopping or service.model is None:
        state = "failed" if service.failure else "stopping" if service.stopping else "loading"
        return web.json_response({"ready": False, "state": state}, status=503)
    return web.json_response({"ready": True, "queued_texts": service.batcher.queued_texts, **service.info()})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected error answers a JSON 500, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("encoder request failed")
        return _error(500, "error", "internal", type(exc).__name__)


def create_encoder_app(settings: EncoderSettings, load: Callable[[], LoadedModel] | None = None) -> web.Application:
    """The aiohttp application of the encoder service; ``load`` defaults to the model registry."""
    service = _Service(settings, load or partial(load_model, settings))
    app = web.Application(client_max_size=_body_limit(settings), middlewares=[_no_tracebacks])
    app[SERVICE] = service
    app.on_startup.append(service.on_startup)
    app.on_shutdown.append(service.on_shutdown)
    app.on_cleanup.append(service.on_cleanup)
    app.router.add_post("/v1/embed", embed)
    app.router.add_get("/v1/model", model_info)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on this event loop (port 0 picks a free one); yields its base URL.

    For benchmarks and tests that run the service in-process on loopback.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
