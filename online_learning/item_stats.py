"""Per-item popularity and click-through rate from time-decayed counters.

CTR is smoothed towards a prior so an item shown twice and clicked once does
not outrank one with a long record: (clicks + a) / (views + a + b).

>>> stats = ItemStats(half_life_s=3600)
>>> stats.record("p1", viewed=1.0, clicked=1.0, at_ms=0)
>>> round(stats.ctr("p1"), 3)
0.136
"""

from __future__ import annotations

from dataclasses import dataclass, field

from online_learning.decay import DecayedScores

PRIOR_CLICKS = 0.5
PRIOR_SKIPS = 9.5  # prior CTR 5 %


@dataclass
class ItemStats:
    """Decayed views, clicks and purchases per product."""

    half_life_s: float
    views: DecayedScores = field(init=False)
    clicks: DecayedScores = field(init=False)

    def __post_init__(self) -> None:
        self.views = DecayedScores(self.half_life_s * 1000)
        self.clicks = DecayedScores(self.half_life_s * 1000)

    def record(self, product_id: str, viewed: float, clicked: float, at_ms: int) -> None:
        """Count an impression of the product and its (weighted) clicks."""
        if viewed:
            self.views.add(product_id, viewed, at_ms)
        if clicked:
            self.clicks.add(product_id, clicked, at_ms)

    def _now_ms(self) -> int:
        # Views and clicks each decay only up to their own latest event; read
        # both as of the later one, or an item's CTR would climb (and its
        # popularity stand still) while only other items are being viewed.
        return max(self.views.ref_ms, self.clicks.ref_ms)

    def ctr(self, product_id: str) -> float:
        """Smoothed click-through rate."""
        at_ms = self._now_ms()
        clicks, views = self.clicks.get(product_id, at_ms), self.views.get(product_id, at_ms)
        return (clicks + PRIOR_CLICKS) / (views + PRIOR_CLICKS + PRIOR_SKIPS)

    def popularity(self, product_id: str) -> float:
        """Decayed weighted clicks."""
        return self.clicks.get(product_id, self._now_ms())

    def prune(self, keep: int) -> None:
        """Bound memory to the ``keep`` most viewed and most clicked items."""
        self.views.prune(keep)
        self.clicks.prune(keep)
