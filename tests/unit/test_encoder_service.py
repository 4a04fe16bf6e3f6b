"""The encoder HTTP service: vectors with their model, validation, backpressure, readiness, failures, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client import REGISTRY

from encoders.registry import LoadedModel
from encoders.service import create_encoder_app, serving
from encoders.settings import EncoderSettings
from encoders.testing import FaultyEncoder
from encoders.text import HashingTextEncoder
from streamrec.cli import build_parser

REFERENCE = HashingTextEncoder(dim=16)
SETTINGS = EncoderSettings(max_request_texts=4, max_text_chars=50, max_queue_texts=4, max_batch_size=4)


@dataclass(frozen=True)
class Reply:
    """What a client saw."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Service:
    """A running service on loopback, its fault-injectable encoder, and a session to call it with."""

    url: str
    encoder: FaultyEncoder
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        """One request; the body is JSON-encoded unless raw bytes are given."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.url + path, data=data) as response:
            text = await response.text()
            parsed = json.loads(text) if response.content_type == "application/json" else text
            return Reply(response.status, dict(response.headers), parsed)


@asynccontextmanager
async def running(
    settings: EncoderSettings = SETTINGS, load: Callable[[], LoadedModel] | None = None
) -> AsyncIterator[Service]:
    """The service over a hashing encoder (or ``load``), ready unless ``load`` holds it back."""
    faulty = FaultyEncoder(HashingTextEncoder(dim=16))
    app = create_encoder_app(settings, load or (lambda: LoadedModel(faulty, "v-test", "cpu")))
    async with serving(app) as url, aiohttp.ClientSession() as session:
        service = Service(url, faulty, session)
        if load is None:
            await until(service, "/readyz", 200)
        try:
            yield service
        finally:
            faulty.release()


async def until(service: Service, path: str, status: int) -> Reply:
    """Poll ``path`` until it answers ``status`` (bounded)."""
    async with asyncio.timeout(10):
        while True:
            reply = await service.call("GET", path)
            if reply.status == status:
                return reply
            await asyncio.sleep(0.01)


def metric(name: str, **labels: str) -> float:
    """Current value of a sample in the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body."""
    asyncio.run(scenario())


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embed_returns_normalised_vectors_with_model_version_and_dim(encoding: str) -> None:
    """POST /v1/embed answers one unit vector per text, in order, with model name, version and dimension."""
    texts = ["red running shoes", "leather bag"]

    async def scenario() -> None:
        async with running() as service:
            reply = await service.call("POST", "/v1/embed", {"texts": texts, "encoding": encoding})
        assert reply.status == 200
        body = reply.body
        assert (body["model"], body["version"], body["dim"], body["count"]) == ("hashing-16", "v-test", 16, 2)
        if encoding == "base64":
            vectors = np.frombuffer(base64.b64decode(body["vectors"]), dtype="<f4").reshape(2, 16)
        else:
            vectors = np.asarray(body["vectors"], dtype=np.float32)
        np.testing.assert_array_equal(vectors, REFERENCE.encode(texts))
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)

    run(scenario)


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{texts: nope", "body"),
    ("not an object", b'["red shoes"]', "body"),
    ("no texts", b'{"text": "red shoes"}', "texts"),
    ("texts not a list", b'{"texts": "red shoes"}', "texts"),
    ("empty list", b'{"texts": []}', "texts"),
    ("too many texts", json.dumps({"texts": ["a"] * 5}).encode(), "texts"),
    ("not a string", b'{"texts": ["ok", 7]}', "texts[1]"),
    ("empty string", b'{"texts": ["ok", ""]}', "texts[1]"),
    ("blank string", b'{"texts": ["   \\n"]}', "texts[0]"),
    ("huge string", json.dumps({"texts": ["x" * 51]}).encode(), "texts[0]"),
    ("unknown encoding", b'{"texts": ["ok"], "encoding": "fp16"}', "encoding"),
]


def test_bad_requests_get_a_400_naming_the_field() -> None:
    """Every invalid body is refused with 400, a JSON body naming the field, and counted as bad_request."""

    async def scenario() -> None:
        before = metric("streamrec_encoder_requests_total", outcome="bad_request")
        async with running() as service:
            replies = [await service.call("POST", "/v1/embed", raw=raw) for _, raw, _ in BAD_BODIES]
        for (case, _, field), reply in zip(BAD_BODIES, replies, strict=True):
            assert (reply.status, reply.body["field"]) == (400, field), case
            assert reply.body["detail"], case
        # Only the warm-up (run before the service said ready) reached the model.
        assert service.encoder.batches
        assert all(text.startswith("warm up") for batch in service.encoder.batches for text in batch)
        assert metric("streamrec_encoder_requests_total", outcome="bad_request") == before + len(BAD_BODIES)

    run(scenario)


def test_a_body_over_the_size_limit_is_413() -> None:
    """A body larger than any valid request could be is refused with 413 before it is parsed."""

    async def scenario() -> None:
        async with running() as service:
            reply = await service.call("POST", "/v1/embed", raw=b"x" * 200_000)
        assert reply.status == 413
        assert reply.body["error"] == "too_large"

    run(scenario)


def test_a_full_queue_answers_503_with_retry_after() -> None:
    """When the queue holds max_queue_texts the service answers 503 with Retry-After at once, then recovers."""

    async def scenario() -> None:
        before = metric("streamrec_encoder_requests_total", outcome="overloaded")
        async with running() as service:
            service.encoder.hold()
            warmups = len(service.encoder.batches)
            in_flight = asyncio.ensure_future(service.call("POST", "/v1/embed", {"texts": ["in flight"]}))
            await eventually(lambda: len(service.encoder.batches) > warmups)
            queued = asyncio.ensure_future(service.call("POST", "/v1/embed", {"texts": ["q1", "q2", "q3", "q4"]}))
            await until_queued(service, 4)
            refused = await service.call("POST", "/v1/embed", {"texts": ["one too many"]})
            service.encoder.release()
            assert (await in_flight).status == 200
            assert (await queued).status == 200
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.body["error"] == "overloaded"
        assert metric("streamrec_encoder_requests_total", outcome="overloaded") == before + 1

    run(scenario)


async def until_queued(service: Service, texts: int) -> None:
    """Poll /readyz until the queue holds ``texts`` texts (bounded)."""
    async with asyncio.timeout(10):
        while (await service.call("GET", "/readyz")).body["queued_texts"] != texts:
            await asyncio.sleep(0.01)


async def eventually(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


def test_not_ready_until_the_model_is_loaded() -> None:
    """While the model loads /healthz is 200, /readyz and /v1/embed are 503 with Retry-After; then all is served."""
    loaded = threading.Event()

    def slow_load() -> LoadedModel:
        loaded.wait(timeout=10)
        return LoadedModel(HashingTextEncoder(dim=16), "v-slow", "cpu")

    async def scenario() -> None:
        async with running(load=slow_load) as service:
            health = await service.call("GET", "/healthz")
            ready = await service.call("GET", "/readyz")
            early = await service.call("POST", "/v1/embed", {"texts": ["too early"]})
            info = await service.call("GET", "/v1/model")
            loaded.set()
            ready_later = await until(service, "/readyz", 200)
            served = await service.call("POST", "/v1/embed", {"texts": ["on time"]})
        assert health.status == 200
        assert (ready.status, ready.body["ready"], ready.body["state"]) == (503, False, "loading")
        assert (early.status, early.headers["Retry-After"], early.body["error"]) == (503, "1", "loading")
        assert info.status == 503
        assert ready_later.body["ready"] is True
        assert (ready_later.body["model"], ready_later.body["version"], ready_later.body["dim"]) == (
            "hashing-16",
            "v-slow",
            16,
        )
        assert served.status == 200

    run(scenario)


def test_a_model_that_fails_to_load_fails_liveness() -> None:
    """A failed load makes /healthz 500 (restart me), /readyz 503, and /v1/embed a retriable 503."""

    def broken_load() -> LoadedModel:
        raise OSError("weights missing")

    async def scenario() -> None:
        async with running(load=broken_load) as service:
            health = await until(service, "/healthz", 500)
            ready = await service.call("GET", "/readyz")
            embed = await service.call("POST", "/v1/embed", {"texts": ["x"]})
        assert "weights missing" in health.body["detail"]
        assert (ready.status, ready.body["state"]) == (503, "failed")
        assert (embed.status, embed.body["error"]) == (503, "model_failed")

    run(scenario)


def test_a_failing_forward_pass_is_a_500_without_traceback() -> None:
    """When the model fails on a batch the callers get 500 with the error named, never a traceback."""

    async def scenario() -> None:
        async with running() as service:
            service.encoder.failing = True
            reply = await service.call("POST", "/v1/embed", {"texts": ["boom"]})
        assert reply.status == 500
        assert reply.body["error"] == "EncoderError"
        assert "Traceback" not in json.dumps(reply.body)

    run(scenario)


def test_concurrent_http_requests_are_merged_into_shared_batches() -> None:
    """Requests from many clients arriving together share forward passes, and each gets its own vectors."""
    texts = [[f"query {i} " + "word " * (i % 5)] for i in range(12)]
    settings = SETTINGS.model_copy(update={"max_batch_size": 16, "max_queue_texts": 64, "max_wait_ms": 20.0})

    async def scenario() -> None:
        async with running(settings) as service:
            warmups = len(service.encoder.batches)
            replies = await asyncio.gather(
                *(service.call("POST", "/v1/embed", {"texts": each, "encoding": "base64"}) for each in texts)
            )
            batches = service.encoder.batches[warmups:]
        for each, reply in zip(texts, replies, strict=True):
            vectors = np.frombuffer(base64.b64decode(reply.body["vectors"]), dtype="<f4").reshape(1, 16)
            np.testing.assert_array_equal(vectors, REFERENCE.encode(each))
        assert len(batches) < len(texts)
        assert sum(map(len, batches)) == len(texts)

    run(scenario)


def test_metrics_expose_the_encoder_series() -> None:
    """/metrics shows request outcomes, queue, queue wait and the service's batch sizes and times."""

    async def scenario() -> None:
        async with running() as service:
            await service.call("POST", "/v1/embed", {"texts": ["counted"]})
            reply = await service.call("GET", "/metrics")
        for name in (
            'streamrec_encoder_requests_total{outcome="ok"}',
            "streamrec_encoder_queue_texts",
            "streamrec_encoder_queue_wait_seconds_bucket",
            'streamrec_encoder_batch_texts_count{caller="service"}',
            'streamrec_encoder_batch_seconds_count{caller="service"}',
        ):
            assert name in reply.body

    run(scenario)


def test_cli_has_an_encoder_command_with_env_fallbacks(capsys: pytest.CaptureFixture[str]) -> None:
    """`streamrec encoder --host --port` parses, and its help names the environment variables."""
    args = build_parser().parse_args(["encoder", "--host", "0.0.0.0", "--port", "9001"])
    assert (args.host, args.port, args.run.__name__) == ("0.0.0.0", 9001, "_cmd_encoder")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["encoder", "--help"])
    help_text = capsys.readouterr().out
    assert "STREAMREC_ENCODER_HOST" in help_text
    assert "STREAMREC_ENCODER_PORT" in help_text
