"""Readiness follows table recovery: a worker recovering its tables is not ready."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ranker.store import MemoryStore
from streamrec.runtime import _readiness


class FakeApp:
    """The one attribute of a faust app that readiness reads."""

    def __init__(self, in_recovery: bool) -> None:
        self.in_recovery = in_recovery


@pytest.mark.parametrize(("in_recovery", "ready"), [(True, False), (False, True)])
def test_readiness_is_false_while_tables_recover(in_recovery: bool, ready: bool) -> None:
    """While faust rebuilds tables from changelogs /readyz says not ready, and says why."""
    check: Any = _readiness(MemoryStore(), FakeApp(in_recovery))  # type: ignore[arg-type]
    body = asyncio.run(check())
    assert (body["ready"], body["recovering"], body["products"]) == (ready, in_recovery, 0)


def test_an_api_without_a_worker_is_ready_when_the_store_answers() -> None:
    """The standalone API has no tables to recover."""
    body = asyncio.run(_readiness(MemoryStore())())
    assert body["ready"] is True
