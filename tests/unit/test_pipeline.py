"""Serving writes in the background: in order, bounded, acknowledged after their own writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from streams.pipeline import Pipeline


def test_jobs_and_callbacks_run_in_the_order_they_were_queued() -> None:
    async def run() -> list[str]:
        pipeline = Pipeline(depth=10)
        done: list[str] = []

        def job(name: str, delay: float) -> Callable[[], Awaitable[None]]:
            async def work() -> None:
                await asyncio.sleep(delay)
                done.append(name)

            return work

        pipeline.submit(job("write 1", 0.05))
        pipeline.then(lambda: done.append("ack 1"))
        pipeline.submit(job("write 2", 0.0))  # quicker, still after the first
        pipeline.then(lambda: done.append("ack 2"))
        assert done == []  # all in the background
        await pipeline.drain()
        return done

    assert asyncio.run(run()) == ["write 1", "ack 1", "write 2", "ack 2"]


def test_room_holds_the_caller_back_while_depth_jobs_are_queued() -> None:
    async def run() -> None:
        pipeline = Pipeline(depth=2)
        release = asyncio.Event()

        async def slow() -> None:
            await release.wait()

        pipeline.submit(slow)
        await asyncio.wait_for(pipeline.room(), 1)  # one queued: room
        pipeline.submit(slow)
        waiting = asyncio.ensure_future(pipeline.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        release.set()
        await asyncio.wait_for(waiting, 1)
        await pipeline.drain()
        assert pipeline.queued == 0

    asyncio.run(run())


def test_a_failed_job_stops_the_line_and_is_raised_by_check() -> None:
    async def run() -> list[str]:
        pipeline = Pipeline()
        acked: list[str] = []

        async def broken() -> None:
            raise RuntimeError("bug")

        pipeline.submit(broken)
        pipeline.then(lambda: acked.append("never"))
        await pipeline.drain()
        with pytest.raises(RuntimeError, match="bug"):
            pipeline.check()
        return acked

    assert asyncio.run(run()) == []
