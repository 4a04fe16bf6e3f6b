"""The faust adapter: the installed faust has what streamrec reaches into, and a release without it stops the worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest

from streamrec.errors import StreamrecError
from streams import faust_adapter


def test_the_pinned_faust_has_every_private_attribute_streamrec_uses() -> None:
    async def check() -> None:
        app = faust.App("unit-adapter", broker="kafka://127.0.0.1:1")
        try:
            faust_adapter.check(app)
        finally:  # the consumer's thread owns an event loop of its own, never started here
            app.consumer._thread.thread_loop.close()  # type: ignore[attr-defined]

    asyncio.run(check())


def test_a_faust_without_them_stops_with_an_error_naming_each() -> None:
    consumer = SimpleNamespace(_committed_offset={}, _wait_next_records=None, _acked_index={}, _n_acked=0)
    app = SimpleNamespace(consumer=consumer)
    with pytest.raises(StreamrecError) as raised:
        faust_adapter.check(app)  # type: ignore[arg-type]
    assert raised.value.context["missing"] == ["Consumer._gap", "Consumer._acked", "App._stop_fetcher"]
