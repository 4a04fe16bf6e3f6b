"""The encoder client against a real service on loopback: retries, timeouts, circuit breaker, waiting, model checks."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from encoders.client import RemoteEncoder
from encoders.registry import LoadedModel
from encoders.service import Handler, create_encoder_app, serving
from encoders.settings import EncoderSettings
from encoders.testing import FaultyEncoder
from encoders.text import HashingTextEncoder
from streamrec.errors import EncoderError, EncoderUnavailable
from streamrec.localkafka import free_port

REFERENCE = HashingTextEncoder(dim=16)
# Fast everything, so failures are found in milliseconds; the breaker's
# clock is injected where a test needs its cool-down to pass.
FAST = EncoderSettings(
    max_request_texts=4,
    max_queue_texts=8,
    timeout_s=2.0,
    connect_timeout_s=1.0,
    attempts=3,
    backoff_base_s=0.005,
    backoff_max_s=0.02,
    breaker_failures=3,
    breaker_cooldown_s=10.0,
    startup_wait_s=0,
    wait_callers=("worker",),
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attempts(outcome: str) -> float:
    """Client attempts counted with ``outcome`` so far."""
    return REGISTRY.get_sample_value("streamrec_encoder_client_attempts_total", {"outcome": outcome}) or 0.0


@asynccontextmanager
async def service(
    port: int = 0,
    dim: int = 16,
    settings: EncoderSettings = FAST,
    middleware: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]] | None = None,
    load: Callable[[], LoadedModel] | None = None,
) -> AsyncIterator[tuple[str, FaultyEncoder]]:
    """A real encoder service on loopback over a fault-injectable hashing encoder; yields its URL and encoder."""
    faulty = FaultyEncoder(HashingTextEncoder(dim=dim))
    app = create_encoder_app(settings, load or (lambda: LoadedModel(faulty, "v1", "cpu")))
    if middleware is not None:
        app.middlewares.append(web.middleware(middleware))
    async with serving(app, port=port) as url:
        if load is None:
            await ready(url)
        try:
            yield url, faulty
        finally:
            faulty.release()


async def ready(url: str) -> None:
    """Poll /readyz until the service is ready (bounded)."""
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        while True:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.005)


@asynccontextmanager
async def client(url: str, settings: EncoderSettings = FAST, **options: Any) -> AsyncIterator[RemoteEncoder]:
    """An opened client, closed afterwards."""
    remote = await RemoteEncoder.open(settings.model_copy(update={"url": url}), **options)
    try:
        yield remote
    finally:
        await remote.aclose()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body."""
    asyncio.run(scenario())


def test_client_returns_the_services_vectors_and_model() -> None:
    """encode() gives the service's vectors in order, splitting long lists at the service's request limit."""
    texts = [f"product title {i}" for i in range(10)]

    async def scenario() -> None:
        async with service() as (url, _), client(url) as remote:
            before = attempts("ok")
            vectors = await remote.encode(texts, caller="worker")
            empty = await remote.encode([], caller="api")
            assert (remote.name, remote.dim, remote.info.version) == ("hashing-16", 16, "v1")
        np.testing.assert_array_equal(vectors, REFERENCE.encode(texts))
        assert empty.shape == (0, 16)
        assert attempts("ok") == before + 3  # 4 + 4 + 2 texts

    run(scenario)


@pytest.mark.parametrize(
    ("status", "retried"), [(429, True), (502, True), (503, True), (504, True), (500, False), (404, False)]
)
def test_only_retriable_statuses_are_retried(status: int, retried: bool) -> None:
    """429/502/503/504 are retried (honouring Retry-After), then succeed; other errors fail at once, not retriable."""
    answered: list[int] = []

    async def fail_once(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/embed" and not answered:
            answered.append(status)
            return web.json_response({"error": "injected"}, status=status, headers={"Retry-After": "0.01"})
        answered.append(200)
        return await handler(request)

    async def scenario() -> None:
        async with service(middleware=fail_once) as (url, _), client(url) as remote:
            answered.clear()  # the client's model lookup went through the middleware too
            if retried:
                vectors = await remote.encode(["red shoes"])
                np.testing.assert_array_equal(vectors, REFERENCE.encode(["red shoes"]))
            else:
                with pytest.raises(EncoderError) as failed:
                    await remote.encode(["red shoes"])
                assert not failed.value.retriable
                assert f"status={status}" in str(failed.value)
            assert remote.breaker.state == "closed"
        assert answered == ([status, 200] if retried else [status])

    run(scenario)


def test_a_refused_request_is_not_retried() -> None:
    """A request the service refuses (an empty text) fails once with a non-retriable error naming the field."""

    async def scenario() -> None:
        async with service() as (url, _), client(url) as remote:
            before = (attempts("rejected"), attempts("ok"))
            with pytest.raises(EncoderError) as refused:
                await remote.encode(["fine", " "])
        assert not refused.value.retriable
        assert "texts[1]" in str(refused.value)
        assert (attempts("rejected"), attempts("ok")) == (before[0] + 1, before[1])

    run(scenario)


def test_a_failing_forward_pass_is_not_retried() -> None:
    """When the model fails on the texts the client fails once, without retrying the same texts."""

    async def scenario() -> None:
        async with service() as (url, faulty), client(url) as remote:
            warmups = len(faulty.batches)
            faulty.failing = True
            with pytest.raises(EncoderError) as failed:
                await remote.encode(["poison"], caller="worker")
            assert not failed.value.retriable
            assert faulty.batches[warmups:] == [["poison"]]

    run(scenario)


def test_timeouts_are_retried_a_bounded_number_of_times() -> None:
    """A service slower than the timeout costs `attempts` timed-out tries, then a retriable EncoderUnavailable."""
    settings = FAST.model_copy(update={"timeout_s": 0.1, "attempts": 2})

    async def scenario() -> None:
        async with service() as (url, faulty), client(url, settings) as remote:
            faulty.delay_s = 0.4
            before = attempts("timeout")
            with pytest.raises(EncoderUnavailable) as unavailable:
                await remote.encode(["slow"])
        assert unavailable.value.retriable
        assert attempts("timeout") == before + 2

    run(scenario)


def test_a_full_service_is_retried_until_it_drains() -> None:
    """A 503 from a full queue is retried after backoff, and the call succeeds once the queue drains."""
    settings = FAST.model_copy(update={"max_queue_texts": 4, "max_batch_size": 1, "attempts": 5})

    async def scenario() -> None:
        async with service(settings=settings) as (url, faulty):
            faulty.hold()

            async def release_then_sleep(seconds: float) -> None:
                faulty.release()  # the first backoff is when the service may drain
                await asyncio.sleep(seconds)

            async with client(url, settings) as blocker, client(url, settings, sleep=release_then_sleep) as remote:
                held = asyncio.ensure_future(blocker.encode(["in the forward pass"]))
                await eventually(lambda: bool(faulty.batches) and faulty.batches[-1] == ["in the forward pass"])
                queued = asyncio.ensure_future(blocker.encode(["q1", "q2", "q3", "q4"]))
                await asyncio.sleep(0.05)  # let the four texts reach the queue
                before = attempts("unavailable")
                vectors = await remote.encode(["patient"])
                await asyncio.gather(held, queued)
        np.testing.assert_array_equal(vectors, REFERENCE.encode(["patient"]))
        assert attempts("unavailable") >= before + 1

    run(scenario)


async def eventually(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


def test_circuit_opens_after_consecutive_failures_and_a_good_probe_closes_it() -> None:
    """N failed attempts open the circuit; calls then fail fast offline; after the cool-down one probe closes it."""
    port = free_port()
    clock = Clock()
    settings = FAST.model_copy(update={"attempts": 1})
    opened = "streamrec_encoder_breaker_opened_total"

    async def scenario() -> None:
        async with service(port) as (url, _):
            remote = await RemoteEncoder.open(settings.model_copy(update={"url": url}), clock=clock)
        try:
            before_open, before_connection = REGISTRY.get_sample_value(opened) or 0.0, attempts("connection")
            for _ in range(3):
                with pytest.raises(EncoderUnavailable):
                    await remote.encode(["down"])
            assert remote.breaker.state == "open"
            assert REGISTRY.get_sample_value(opened) == before_open + 1
            with pytest.raises(EncoderUnavailable, match="circuit is open"):
                await remote.encode(["refused offline"])
            assert attempts("connection") == before_connection + 3  # the refused call never connected
            async with service(port):
                with pytest.raises(EncoderUnavailable, match="circuit is open"):
                    await remote.encode(["still cooling down"])
                clock.now += settings.breaker_cooldown_s
                vectors = await remote.encode(["probe"])
            np.testing.assert_array_equal(vectors, REFERENCE.encode(["probe"]))
            assert remote.breaker.state == "closed"
            assert REGISTRY.get_sample_value("streamrec_encoder_breaker_state") == 0
        finally:
            await remote.aclose()

    run(scenario)


def test_a_failed_probe_opens_the_circuit_for_another_cool_down() -> None:
    """If the half-open probe fails the circuit opens again and refuses calls for a full cool-down."""
    port = free_port()
    clock = Clock()
    settings = FAST.model_copy(update={"attempts": 1, "breaker_failures": 1})

    async def scenario() -> None:
        async with service(port) as (url, _):
            remote = await RemoteEncoder.open(settings.model_copy(update={"url": url}), clock=clock)
        try:
            with pytest.raises(EncoderUnavailable):
                await remote.encode(["down"])
            clock.now += settings.breaker_cooldown_s
            with pytest.raises(EncoderUnavailable, match="unavailable"):
                await remote.encode(["failed probe"])
            assert remote.breaker.state == "open"
            assert remote.breaker.retry_in_s() == settings.breaker_cooldown_s
        finally:
            await remote.aclose()

    run(scenario)


def test_waiting_callers_ride_out_an_outage_while_others_fail_fast() -> None:
    """With the service down the worker's call waits (back-pressure) and completes when it returns; the API's fails."""
    port = free_port()
    settings = FAST.model_copy(update={"breaker_cooldown_s": 0.02})
    waits: list[float] = []
    three_waits = asyncio.Event()

    async def counting_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 3:
            three_waits.set()
        await asyncio.sleep(seconds)

    async def scenario() -> None:
        async with service(port) as (url, _):
            remote = await RemoteEncoder.open(settings.model_copy(update={"url": url}), sleep=counting_sleep)
        try:
            with pytest.raises(EncoderUnavailable):
                await remote.encode(["search query"], caller="api")
            waiting = asyncio.ensure_future(remote.encode(["new product"], caller="worker"))
            await asyncio.wait_for(three_waits.wait(), timeout=10)
            assert not waiting.done()
            async with service(port):
                vectors = await asyncio.wait_for(waiting, timeout=10)
            np.testing.assert_array_equal(vectors, REFERENCE.encode(["new product"]))
        finally:
            await remote.aclose()

    run(scenario)


def test_open_waits_for_a_loading_service_and_gives_up_after_startup_wait() -> None:
    """open() waits while the model loads and returns once ready; with nothing listening it gives up, retriable."""
    loaded = threading.Event()

    def slow_load() -> LoadedModel:
        loaded.wait(timeout=10)
        return LoadedModel(HashingTextEncoder(dim=16), "v-late", "cpu")

    async def scenario() -> None:
        patient = FAST.model_copy(update={"startup_wait_s": 10.0})
        async with service(load=slow_load) as (url, _):
            opening = asyncio.ensure_future(RemoteEncoder.open(patient.model_copy(update={"url": url})))
            await asyncio.sleep(0.05)
            assert not opening.done()
            loaded.set()
            remote = await asyncio.wait_for(opening, timeout=10)
            assert remote.info.version == "v-late"
            await remote.aclose()
        impatient = FAST.model_copy(update={"startup_wait_s": 0.05, "url": f"http://127.0.0.1:{free_port()}"})
        with pytest.raises(EncoderUnavailable, match="did not become ready") as gave_up:
            await RemoteEncoder.open(impatient)
        assert gave_up.value.retriable

    run(scenario)


def test_a_service_now_serving_another_model_is_refused() -> None:
    """If the service behind the URL starts serving a different model, encode() fails, not retriable."""
    port = free_port()

    async def scenario() -> None:
        async with service(port) as (url, _):
            remote = await RemoteEncoder.open(FAST.model_copy(update={"url": url}))
        try:
            async with service(port, dim=32):
                with pytest.raises(EncoderError, match="another model") as refused:
                    await remote.encode(["red shoes"], caller="worker")
            assert not refused.value.retriable
        finally:
            await remote.aclose()

    run(scenario)


def test_connect_works_from_synchronous_start_up_code() -> None:
    """connect() (used by build_components before any loop runs) learns the model; the client then works on a loop."""
    port = free_port()
    started, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with service(port):
                started.set()
                await asyncio.to_thread(stop.wait, 10)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        remote = RemoteEncoder.connect(FAST.model_copy(update={"url": f"http://127.0.0.1:{port}", "startup_wait_s": 5}))
        assert (remote.name, remote.dim) == ("hashing-16", 16)

        async def use() -> np.ndarray[Any, Any]:
            try:
                return await remote.encode(["red shoes"])
            finally:
                await remote.aclose()

        np.testing.assert_array_equal(asyncio.run(use()), REFERENCE.encode(["red shoes"]))
    finally:
        stop.set()
        thread.join(10)


def test_backoff_is_jittered_and_bounded_however_long_the_outage() -> None:
    """Waits grow from the base, stay within [cap/2, cap] even after thousands of attempts, and honour Retry-After."""
    remote = RemoteEncoder(FAST.model_copy(update={"url": "http://127.0.0.1:1"}), rng=random.Random(7))
    cap = FAST.backoff_max_s
    assert FAST.backoff_base_s / 2 <= remote._delay(0) <= FAST.backoff_base_s
    for attempt in (10, 1_000, 100_000):
        assert cap / 2 <= remote._delay(attempt) <= cap
    assert cap <= remote._delay(0, retry_after_s=60.0) <= cap + FAST.backoff_base_s
