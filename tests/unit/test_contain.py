"""A poison message is retried alone, then dead-lettered; the events around it are applied once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streamrec import failpoints
from streamrec.errors import ConfigError, InjectedFault
from streams.contain import apply_contained
from streams.events import Rejection

Item = tuple[Any, str]


def items(*names: str) -> list[Item]:
    """(event, payload) pairs whose events carry their name as raw bytes."""
    return [(SimpleNamespace(value=name.encode()), name) for name in names]


class Recorder:
    """An apply function that fails for chosen payloads, and the dead letters it caused."""

    def __init__(self, poison: set[str], transient: dict[str, int] | None = None) -> None:
        self.poison = poison
        self.transient = dict(transient or {})  # payload -> failures left before it succeeds
        self.applied: list[str] = []
        self.calls = 0
        self.dead: list[tuple[bytes, Rejection, str]] = []

    async def apply(self, batch: Sequence[Item]) -> None:
        self.calls += 1
        for _, payload in batch:
            if payload in self.poison:
                raise ValueError(f"cannot process {payload}")
            if self.transient.get(payload, 0) > 0:
                self.transient[payload] -= 1
                raise RuntimeError(f"{payload} failed this time")
        self.applied += [payload for _, payload in batch]

    async def dead_letter(self, event: Any, rejection: Rejection, agent: str) -> None:
        self.dead.append((event.value, rejection, agent))


def run(recorder: Recorder, batch: list[Item], attempts: int = 3) -> int:
    """Apply ``batch`` contained, with no backoff to wait for."""
    return asyncio.run(
        apply_contained("behavior", batch, recorder.apply, recorder.dead_letter, attempts=attempts, backoff_s=0)
    )


def sample(name: str) -> float:
    """A counter of the behavior agent."""
    return REGISTRY.get_sample_value(name, {"agent": "behavior"}) or 0.0


def test_a_healthy_batch_is_applied_in_one_call() -> None:
    """No failure: one call, nothing dead-lettered."""
    recorder = Recorder(poison=set())
    assert run(recorder, items("a", "b", "c")) == 0
    assert (recorder.calls, recorder.applied, recorder.dead) == (1, ["a", "b", "c"], [])


def test_a_poison_message_is_dead_lettered_after_bounded_retries_and_the_rest_flow_in_order() -> None:
    """The poison is tried ``attempts`` times alone, then dead-lettered with its cause; the others apply once."""
    failed, retries = sample("streamrec_failed_batches_total"), sample("streamrec_poison_retries_total")
    recorder = Recorder(poison={"b"})
    assert run(recorder, items("a", "b", "c"), attempts=3) == 1
    assert recorder.applied == ["a", "c"]
    assert recorder.calls == 1 + 1 + 3 + 1  # the batch, a, b three times, c
    [(raw, rejection, agent)] = recorder.dead
    assert (raw, rejection.reason, agent) == (b"b", "processing_failed", "behavior")
    assert rejection.raw == b"b"
    assert "ValueError: cannot process b" in rejection.detail
    assert "after 3 attempts" in rejection.detail
    assert sample("streamrec_failed_batches_total") == failed + 1
    assert sample("streamrec_poison_retries_total") == retries + 2


def test_an_event_that_fails_once_succeeds_on_retry_and_is_not_dead_lettered() -> None:
    """A failure that goes away within the attempts is not a poison message."""
    recorder = Recorder(poison=set(), transient={"b": 2})
    assert run(recorder, items("a", "b"), attempts=3) == 0
    assert recorder.applied == ["a", "b"]
    assert recorder.dead == []


def test_an_empty_batch_does_nothing() -> None:
    """No events, no calls."""
    recorder = Recorder(poison=set())
    assert run(recorder, []) == 0
    assert recorder.calls == 0


def test_cancellation_is_not_contained() -> None:
    """Shutting down cancels the agent; that must propagate, not dead-letter the batch."""

    async def cancelled(_: Sequence[Item]) -> None:
        raise asyncio.CancelledError

    recorder = Recorder(poison=set())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(apply_contained("behavior", items("a"), cancelled, recorder.dead_letter, backoff_s=0))
    assert recorder.dead == []


def test_failpoints_fire_only_for_matching_keys_and_disarm() -> None:
    """An armed failpoint raises InjectedFault for keys matching its glob, and nothing once disarmed."""
    failpoints.arm("behavior.event=poison-*")
    try:
        failpoints.check("behavior.event", "ok-1")
        failpoints.check("catalog.event", "poison-1")
        with pytest.raises(InjectedFault, match=r"behavior\.event"):
            failpoints.check("behavior.event", "poison-1")
    finally:
        failpoints.arm("")
    failpoints.check("behavior.event", "poison-1")


@pytest.mark.parametrize("spec", ["nosuch.point=x", "behavior.event", "behavior.event=", "=x"])
def test_bad_failpoint_specs_are_configuration_errors(spec: str) -> None:
    """A typo in STREAMREC_FAILPOINTS fails loudly instead of arming nothing."""
    with pytest.raises(ConfigError, match="STREAMREC_FAILPOINTS"):
        failpoints.parse(spec)


def test_several_failpoints_parse() -> None:
    """Entries are separated by semicolons."""
    assert failpoints.parse("behavior.event=a*; labels.event=b") == {"behavior.event": "a*", "labels.event": "b"}
