"""Exponentially decayed scores that tolerate out-of-order updates.

A score is stored as of a reference time; adding an increment observed at
time ``t`` decays whichever side is older, so applying the same events in any
order gives the same scores.

>>> scores = DecayedScores(half_life_ms=1000)
>>> scores.add("shoes", 1.0, at_ms=0)
>>> scores.add("shoes", 1.0, at_ms=1000)
>>> round(scores.get("shoes", at_ms=1000), 6)
1.5
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping


class DecayedScores:
    """Named scores that halve every ``half_life_ms`` milliseconds."""

    __slots__ = ("_half_life_ms", "_ref_ms", "_scores")

    def __init__(self, half_life_ms: float, scores: Mapping[str, float] | None = None, ref_ms: int = 0) -> None:
        if not half_life_ms > 0:  # also rejects NaN, which would poison every score
            raise ValueError("half_life_ms must be positive")
        self._half_life_ms = half_life_ms
        self._scores: dict[str, float] = dict(scores or {})
        self._ref_ms = ref_ms

    def _factor(self, elapsed_ms: float) -> float:
        return math.exp2(-elapsed_ms / self._half_life_ms)

    def add(self, name: str, amount: float, at_ms: int) -> None:
        """Add ``amount`` observed at ``at_ms``."""
        if at_ms > self._ref_ms:
            factor = self._factor(at_ms - self._ref_ms)
            self._scores = {key: value * factor for key, value in self._scores.items()}
            self._ref_ms = at_ms
        else:
            amount *= self._factor(self._ref_ms - at_ms)
        self._scores[name] = self._scores.get(name, 0.0) + amount

    def get(self, name: str, at_ms: int | None = None) -> float:
        """The score of ``name`` as of ``at_ms`` (default: the reference time)."""
        value = self._scores.get(name, 0.0)
        if at_ms is None or at_ms <= self._ref_ms:
            return value
        return value * self._factor(at_ms - self._ref_ms)

    def normalized(self, top: int | None = None) -> dict[str, float]:
        """Scores divided by the largest, highest first, optionally cut to ``top``."""
        ranked = sorted(self._scores.items(), key=lambda item: item[1], reverse=True)[:top]
        peak = ranked[0][1] if ranked else 0.0
        return {key: value / peak for key, value in ranked} if peak > 0 else {}

    def prune(self, keep: int) -> None:
        """Keep only the ``keep`` highest scores, bounding memory per profile."""
        if len(self._scores) > keep:
            self._scores = dict(sorted(self._scores.items(), key=lambda item: item[1], reverse=True)[:keep])

    @property
    def ref_ms(self) -> int:
        """Time the stored scores refer to."""
        return self._ref_ms

    def items(self) -> Iterator[tuple[str, float]]:
        """Stored (name, score) pairs as of the reference time."""
        return iter(self._scores.items())
