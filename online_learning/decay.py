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
import operator
from collections.abc import Iterator, Mapping

# Scores are kept relative to a landmark time, so an update costs O(1)
# however many names there are (the learner holds up to 100k items): the
# stored value is the score as of the landmark, grown by 2^(elapsed/half-life)
# for later increments. The landmark moves (one pass over all names) only
# once event time runs this many half-lives past it, before floats get large.
REBASE_HALF_LIVES = 60.0


class DecayedScores:
    """Named scores that halve every ``half_life_ms`` milliseconds."""

    __slots__ = ("_base_ms", "_half_life_ms", "_ref_ms", "_scores")

    def __init__(self, half_life_ms: float, scores: Mapping[str, float] | None = None, ref_ms: int = 0) -> None:
        if not half_life_ms > 0:  # also rejects NaN, which would poison every score
            raise ValueError("half_life_ms must be positive")
        self._half_life_ms = half_life_ms
        self._scores: dict[str, float] = dict(scores or {})
        self._ref_ms = ref_ms
        self._base_ms = ref_ms

    def _factor(self, elapsed_ms: float) -> float:
        return math.exp2(-elapsed_ms / self._half_life_ms)

    def _rebase(self, base_ms: int) -> None:
        factor = self._factor(base_ms - self._base_ms)
        self._scores = {key: value * factor for key, value in self._scores.items()}
        self._base_ms = base_ms

    def add(self, name: str, amount: float, at_ms: int) -> None:
        """Add ``amount`` observed at ``at_ms``."""
        if not self._scores:
            self._base_ms = max(at_ms, self._ref_ms)
        elif (at_ms - self._base_ms) / self._half_life_ms > REBASE_HALF_LIVES:
            self._rebase(at_ms)
        self._ref_ms = max(self._ref_ms, at_ms)
        self._scores[name] = self._scores.get(name, 0.0) + amount * self._factor(self._base_ms - at_ms)

    def add_many(self, amounts: Mapping[str, float], at_ms: int) -> None:
        """``add(name, amount, at_ms)`` for every pair, with the time arithmetic done once (the same sums)."""
        if not amounts:
            return
        if not self._scores:
            self._base_ms = max(at_ms, self._ref_ms)
        elif (at_ms - self._base_ms) / self._half_life_ms > REBASE_HALF_LIVES:
            self._rebase(at_ms)
        self._ref_ms = max(self._ref_ms, at_ms)
        factor = self._factor(self._base_ms - at_ms)
        scores = self._scores
        get = scores.get
        for name, amount in amounts.items():
            scores[name] = get(name, 0.0) + amount * factor

    def get(self, name: str, at_ms: int | None = None) -> float:
        """The score of ``name`` as of ``at_ms`` (default, or any earlier time: the reference time)."""
        at = self._ref_ms if at_ms is None or at_ms <= self._ref_ms else at_ms
        return self._scores.get(name, 0.0) * self._factor(at - self._base_ms)

    def normalized(self, top: int | None = None) -> dict[str, float]:
        """Scores divided by the largest, highest first, optionally cut to ``top``."""
        # Every stored value carries the same factor, so ratios need none.
        ranked = sorted(self._scores.items(), key=lambda item: item[1], reverse=True)[:top]
        peak = ranked[0][1] if ranked else 0.0
        return {key: value / peak for key, value in ranked} if peak > 0 else {}

    def prune(self, keep: int) -> None:
        """Keep only the ``keep`` highest scores, bounding memory per profile."""
        if len(self._scores) > keep:
            self._scores = dict(sorted(self._scores.items(), key=operator.itemgetter(1), reverse=True)[:keep])

    @property
    def ref_ms(self) -> int:
        """The latest time an increment was observed at; scores are read as of it."""
        return self._ref_ms

    def items(self) -> Iterator[tuple[str, float]]:
        """(name, score) pairs as of the reference time."""
        factor = self._factor(self._ref_ms - self._base_ms)
        return ((key, value * factor) for key, value in self._scores.items())

    def items_at(self, at_ms: int) -> Iterator[tuple[str, float]]:
        """(name, score) pairs as of ``at_ms`` (or the reference time, if later): ``get`` of every name in one pass."""
        at = self._ref_ms if at_ms <= self._ref_ms else at_ms
        factor = self._factor(at - self._base_ms)
        return ((key, value * factor) for key, value in self._scores.items())

    def __len__(self) -> int:
        return len(self._scores)

    def __getstate__(self) -> tuple[float, dict[str, float], int, int]:
        return self._half_life_ms, self._scores, self._ref_ms, self._base_ms

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[0] is None:
            # Pickled (in a model snapshot) before the landmark existed:
            # slot values, stored as of the reference time.
            slots = state[1]
            self._half_life_ms, self._scores, self._ref_ms = slots["_half_life_ms"], slots["_scores"], slots["_ref_ms"]
            self._base_ms = self._ref_ms
            return
        assert isinstance(state, tuple)
        self._half_life_ms, self._scores, self._ref_ms, self._base_ms = state
