"""Assemble the processes: worker, API, or both in one (Milvus Lite's mode).

Milvus Lite lets one process open a database file, so on embedded defaults
the worker and the API share a process; with a Milvus server they run apart.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import faust
import mode
from aiohttp import web

from encoders.cache import CachedEmbedder
from encoders.client import RemoteEncoder
from encoders.registry import load_model
from encoders.runner import AsyncEncoder, Embedder
from encoders.service import create_encoder_app
from encoders.settings import EncoderSettings
from online_learning.settings import LearningSettings
from ranker.api import create_api, create_health_app
from ranker.impressions import KafkaSink
from ranker.milvus_store import MilvusStore
from ranker.models import ModelHolder, ModelWatcher
from ranker.service import Recommender
from ranker.settings import RankerSettings
from ranker.store import VectorStore
from streams.settings import StreamSettings
from streams.topics import ensure_topics
from streams.worker import StreamWorker

log = logging.getLogger(__name__)


class HttpService(mode.Service):
    """Serves an aiohttp application as part of a faust worker's lifecycle."""

    def __init__(self, app: web.Application, host: str, port: int, **kwargs: Any) -> None:
        self._web_app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self._web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("HTTP listening on http://%s:%d", self._host, self._port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def get_web_url(self) -> str:
        """Where this service listens."""
        return f"http://{self._host}:{self._port}"


def build_components(
    encoder_settings: EncoderSettings, ranker_settings: RankerSettings
) -> tuple[Embedder, VectorStore]:
    """Reach the encoder service (``STREAMREC_ENCODER_URL``) or load the model here; open the vector store.

    Queries from the API go through an LRU cache; the worker's calls pass it
    by (and, with a service, wait while it is down instead of failing).
    """
    base: Embedder
    if encoder_settings.url:
        base = RemoteEncoder.connect(encoder_settings)
    else:
        base = AsyncEncoder(load_model(encoder_settings).encoder)
    encoder = CachedEmbedder(base, encoder_settings.cache_size, encoder_settings.cache_callers)
    store = MilvusStore(ranker_settings, dim=encoder.dim)
    return encoder, store


def _readiness(store: VectorStore, app: faust.App | None = None) -> Any:
    """Ready when the store answers and, in a worker, no table is recovering from its changelog."""

    async def check() -> dict[str, Any]:
        products = await asyncio.to_thread(store.count_products)
        # Faust sets in_recovery while tables rebuild (at start and after each
        # rebalance); answers served meanwhile would miss recovered state.
        recovering = bool(app is not None and app.in_recovery)
        return {"ready": not recovering, "recovering": recovering, "products": products}

    return check


def build_api(
    store: VectorStore, encoder: Embedder, ranker_settings: RankerSettings, worker_app: faust.App | None = None
) -> web.Application:
    """The API wired to Kafka: impressions out, model snapshots in (hot-swapped)."""
    stream_settings = StreamSettings()
    learning = LearningSettings()
    models = ModelHolder(learning.min_examples_to_serve, learning.min_auc)
    sink = KafkaSink(stream_settings.connection(), stream_settings.topic_impressions)
    watcher = ModelWatcher(models, stream_settings.connection(), stream_settings.topic_model)
    recommender = Recommender(store, encoder, ranker_settings, models=models, impressions=sink)
    app = create_api(recommender, ranker_settings, _readiness(store, worker_app))

    async def start(_: web.Application) -> None:
        await sink.start()
        await watcher.start()

    async def stop(_: web.Application) -> None:
        await watcher.stop()
        await sink.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def run_worker(with_api: bool, create_topics: bool = True) -> None:
    """Run the stream worker (and the API in the same process when asked)."""
    stream_settings = StreamSettings()
    ranker_settings = RankerSettings()
    if create_topics:
        created = ensure_topics(stream_settings)
        if created:
            log.info("created topics: %s", ", ".join(created))
    encoder, store = build_components(EncoderSettings(), ranker_settings)
    worker = StreamWorker(stream_settings, store, encoder)
    if with_api:
        api = build_api(store, encoder, ranker_settings, worker.app)
        worker.app.web_server(HttpService(api, ranker_settings.api_host, ranker_settings.api_port))
    else:
        # Only health, readiness and metrics on the worker's own port.
        health = create_health_app(_readiness(store, worker.app))
        worker.app.web_server(HttpService(health, "0.0.0.0", stream_settings.worker_web_port))
    loglevel = os.environ.get("STREAMREC_LOG_LEVEL", "info")
    faust.Worker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()


def run_api() -> None:
    """Run the API alone; it needs a Milvus server shared with the workers."""
    ranker_settings = RankerSettings()
    encoder, store = build_components(EncoderSettings(), ranker_settings)
    api = build_api(store, encoder, ranker_settings)
    web.run_app(api, host=ranker_settings.api_host, port=ranker_settings.api_port, access_log=None)


def run_encoder() -> None:
    """Run the encoder HTTP service; the model loads in the background and ``/readyz`` says when."""
    settings = EncoderSettings()
    app = create_encoder_app(settings)
    web.run_app(app, host=settings.host, port=settings.port, access_log=None)
    log.info("encoder service stopped")
