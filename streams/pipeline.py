"""Serving writes of one batch overlapping the folding of the next, acknowledged in order.

A behavior batch saves its profiles to the changelog, then writes their
serving rows to the vector store and sends its item deltas. The store write
waits on another process (about a third of a batch's time, measured), so
it runs in the background while the next batch is folded. Everything queued
here runs in the order it was queued, one job at a time: the rows of a
shopper's batches reach the store in order, and a batch is acknowledged
(its offsets committed later) only after its own serving writes.

A job that fails for good stops the line: nothing after it runs (no later
batch is acknowledged), and :meth:`Pipeline.check` raises its error to the
agent, whose events are then read again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Pipeline:
    """Jobs run one after another in the background, at most ``depth`` queued."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._tail: asyncio.Future[None] | None = None
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()
        self._failed: BaseException | None = None

    @property
    def queued(self) -> int:
        """Jobs queued or running."""
        return self._queued

    def submit(self, job: Job) -> None:
        """Queue ``job`` after everything queued so far."""
        previous = self._tail
        self._queued += 1
        if self._queued >= self.depth:
            self._room.clear()

        async def run() -> None:
            try:
                if previous is not None:
                    await previous  # raises if an earlier job failed: this one never runs
                await job()
            except BaseException as exc:
                if self._failed is None:
                    self._failed = exc
                    log.error("a serving write failed for good; no later batch is acknowledged: %r", exc)
                raise
            finally:
                self._queued -= 1
                if self._queued < self.depth:
                    self._room.set()

        self._tail = asyncio.ensure_future(run())
        self._tail.add_done_callback(_retrieved)

    def then(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once everything queued so far has run."""

        async def call() -> None:
            callback()

        self.submit(call)

    def check(self) -> None:
        """Raise the error of a job that failed, if one did."""
        if self._failed is not None:
            raise self._failed

    async def room(self) -> None:
        """Wait until fewer than ``depth`` jobs are queued (a slow store holds the next batch back)."""
        await self._room.wait()

    async def drain(self) -> None:
        """Wait until everything queued has run (or the line stopped)."""
        tail = self._tail
        if tail is not None:
            await asyncio.wait([tail])


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # read here; reported through Pipeline.check
