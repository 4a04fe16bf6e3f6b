"""A circuit breaker: stop calling a service that keeps failing, probe it later.

Closed: calls go through; ``failure_threshold`` consecutive failures open
it. Open: calls are refused without touching the network until
``cooldown_s`` has passed. Half-open: one probe goes through; its success
closes the circuit, its failure opens it for another cool-down.

>>> now = [0.0]
>>> breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5, clock=lambda: now[0])
>>> breaker.record_failure(); breaker.record_failure(); breaker.state
'open'
>>> breaker.allow()
False
>>> now[0] = 5.0
>>> breaker.allow(), breaker.allow(), breaker.state
(True, False, 'half_open')
>>> breaker.record_success(); breaker.state
'closed'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from encoders.metrics import BREAKER_OPENED, BREAKER_STATE

State = Literal["closed", "half_open", "open"]
_GAUGE: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Counts consecutive failures of one dependency; not thread-safe (one event loop)."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        BREAKER_STATE.set(_GAUGE["closed"])

    @property
    def state(self) -> State:
        """``closed``, ``half_open`` or ``open``."""
        return self._state

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it would now)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may go out now; a True in half-open state makes it the probe."""
        if self._state == "open" and self.retry_in_s() == 0.0:
            self._set("half_open")
        if self._state == "half_open":
            if self._probing:
                return False
            self._probing = True
            return True
        return self._state == "closed"

    def record_success(self) -> None:
        """The service answered: close the circuit."""
        self._failures = 0
        self._probing = False
        self._set("closed")

    def record_failure(self) -> None:
        """The service could not be reached or was unavailable."""
        self._failures += 1
        self._probing = False
        # A straggler failing after the circuit opened does not extend the cool-down.
        if self._state != "open" and (self._state == "half_open" or self._failures >= self._threshold):
            BREAKER_OPENED.inc()
            self._opened_at = self._clock()
            self._set("open")

    def release(self) -> None:
        """A call ended without a verdict (it was cancelled): let another probe go."""
        self._probing = False

    def _set(self, state: State) -> None:
        self._state = state
        BREAKER_STATE.set(_GAUGE[state])
