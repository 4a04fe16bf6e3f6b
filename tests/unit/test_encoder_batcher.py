"""The dynamic batcher: own vectors in own order, merged and length-sorted batches, bounded queue, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoders.batcher import DynamicBatcher, QueueFull
from encoders.runner import AsyncEncoder
from encoders.testing import FaultyEncoder
from encoders.text import HashingTextEncoder
from streamrec.errors import EncoderError, EncoderUnavailable

REFERENCE = HashingTextEncoder(dim=32)
Scenario = Callable[[DynamicBatcher, FaultyEncoder], Awaitable[None]]


def run_with_batcher(scenario: Scenario, max_batch: int = 8, max_wait_s: float = 0.02, max_queue: int = 64) -> None:
    """Run ``scenario`` against a started batcher over a fault-injectable hashing encoder."""

    async def main() -> None:
        faulty = FaultyEncoder(HashingTextEncoder(dim=32))
        runner = AsyncEncoder(faulty)
        batcher = DynamicBatcher(runner, max_batch, max_wait_s, max_queue)
        batcher.start()
        try:
            await scenario(batcher, faulty)
        finally:
            faulty.release()
            await batcher.close()
            runner.close()

    asyncio.run(main())


async def wait_until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded, so a bug fails instead of hanging)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.001)


texts_strategy = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(st.lists(texts_strategy, min_size=1, max_size=6), min_size=1, max_size=30))
def test_every_request_gets_its_own_vectors_in_its_order(requests: list[list[str]]) -> None:
    """Under concurrency each caller gets exactly the vectors of its texts, in its order, and no batch overflows."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
        for texts, vectors in zip(requests, results, strict=True):
            np.testing.assert_array_equal(vectors, REFERENCE.encode(texts))
        assert sum(len(batch) for batch in faulty.batches) == sum(len(texts) for texts in requests)
        assert all(len(batch) <= 8 for batch in faulty.batches)

    run_with_batcher(scenario, max_queue=1000)


def test_concurrent_requests_share_forward_passes_sorted_by_length() -> None:
    """Requests waiting together go into one forward pass whose texts are sorted by length."""
    requests = [["a much longer product title here"], ["short"], ["medium length", "xy"], ["tiny one"]]

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
        assert len(faulty.batches) == 1
        (batch,) = faulty.batches
        assert [len(text) for text in batch] == sorted(len(text) for text in batch)
        for texts, vectors in zip(requests, results, strict=True):
            np.testing.assert_array_equal(vectors, REFERENCE.encode(texts))

    # The batch fills (5 texts) long before the wait ends: it must not wait.
    run_with_batcher(scenario, max_batch=5, max_wait_s=30)


def test_a_lone_request_is_encoded_after_max_wait() -> None:
    """A request nobody joins is encoded once its wait is over, alone."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        vectors = await asyncio.wait_for(batcher.embed(["red shoes"]), timeout=10)
        np.testing.assert_array_equal(vectors, REFERENCE.encode(["red shoes"]))
        assert faulty.batches == [["red shoes"]]

    run_with_batcher(scenario, max_batch=64, max_wait_s=0.01)


def test_a_request_larger_than_a_batch_goes_alone() -> None:
    """A request over max_batch_size is encoded whole, in one call, and others wait for the next batch."""
    big = [f"product number {i}" for i in range(10)]

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        big_vectors, small_vectors = await asyncio.gather(batcher.embed(big), batcher.embed(["small"]))
        np.testing.assert_array_equal(big_vectors, REFERENCE.encode(big))
        np.testing.assert_array_equal(small_vectors, REFERENCE.encode(["small"]))
        assert sorted(len(batch) for batch in faulty.batches) == [1, 10]

    run_with_batcher(scenario, max_batch=4)


def test_a_full_queue_refuses_at_once_and_drains_later() -> None:
    """Past max_queue_texts waiting texts a request fails fast with a retriable QueueFull; queued ones finish."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        faulty.hold()
        in_flight = asyncio.ensure_future(batcher.embed(["in the forward pass"]))
        await wait_until(lambda: len(faulty.batches) == 1)
        queued = asyncio.ensure_future(batcher.embed(["waiting one", "waiting two", "waiting three"]))
        await wait_until(lambda: batcher.queued_texts == 3)
        with pytest.raises(QueueFull) as refused:
            await batcher.embed(["one too many"])
        assert refused.value.retriable
        faulty.release()
        assert (await in_flight).shape == (1, 32)
        np.testing.assert_array_equal(await queued, REFERENCE.encode(["waiting one", "waiting two", "waiting three"]))
        assert batcher.queued_texts == 0

    run_with_batcher(scenario, max_batch=3, max_queue=3)


def test_a_failed_batch_fails_its_requests_and_the_next_batch_works() -> None:
    """An encoder error reaches every request of its batch; the batcher keeps serving afterwards."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        faulty.failing = True
        outcomes = await asyncio.gather(batcher.embed(["a"]), batcher.embed(["b"]), return_exceptions=True)
        assert all(isinstance(outcome, EncoderError) and not outcome.retriable for outcome in outcomes)
        faulty.failing = False
        np.testing.assert_array_equal(await batcher.embed(["c"]), REFERENCE.encode(["c"]))

    run_with_batcher(scenario)


def test_a_cancelled_request_leaves_the_queue_unencoded() -> None:
    """A caller that goes away frees its queue space and its texts never reach the encoder."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        faulty.hold()
        first = asyncio.ensure_future(batcher.embed(["in the forward pass"]))
        await wait_until(lambda: len(faulty.batches) == 1)
        gone = asyncio.ensure_future(batcher.embed(["abandoned text"]))
        kept = asyncio.ensure_future(batcher.embed(["kept text"]))
        await wait_until(lambda: batcher.queued_texts == 2)
        gone.cancel()
        await wait_until(lambda: batcher.queued_texts == 1)
        faulty.release()
        await first
        np.testing.assert_array_equal(await kept, REFERENCE.encode(["kept text"]))
        assert all("abandoned text" not in batch for batch in faulty.batches)

    run_with_batcher(scenario)


def test_close_fails_waiting_requests_as_unavailable() -> None:
    """Closing the batcher fails queued and in-flight requests with a retriable error and refuses new ones."""

    async def scenario(batcher: DynamicBatcher, faulty: FaultyEncoder) -> None:
        faulty.hold()
        pending = [asyncio.ensure_future(batcher.embed([text])) for text in ("one", "two")]
        await wait_until(lambda: len(faulty.batches) == 1)
        await batcher.close()
        outcomes: Sequence[object] = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(outcome, EncoderUnavailable) for outcome in outcomes)
        with pytest.raises(EncoderUnavailable):
            await batcher.embed(["after close"])

    run_with_batcher(scenario, max_batch=1)
