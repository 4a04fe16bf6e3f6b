"""A running standard scaler that cannot blow up on a nearly constant feature.

river's StandardScaler divides by the running standard deviation; when a
feature barely varies (the freshness of a catalog loaded at once) that is
close to zero, a tiny drift becomes a huge input and SGD diverges to
non-finite weights. Here the deviation has a floor and the result is clipped.

>>> scaler = FlooredScaler(min_std=0.1, bound=5.0)
>>> for value in (1.0, 1.0000001, 1.0):
...     scaler.learn_one({"x": value})
>>> scaler.transform_one({"x": 2.0})
{'x': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from river import base


class FlooredScaler(base.Transformer):
    """(x - mean) / max(std, min_std), clipped to [-bound, bound]; non-finite inputs become 0."""

    def __init__(self, min_std: float = 0.05, bound: float = 10.0) -> None:
        self.min_std = min_std
        self.bound = bound
        self.counts: dict[Hashable, int] = {}
        self.means: dict[Hashable, float] = {}
        self.m2: dict[Hashable, float] = {}

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        """Update the running mean and variance (Welford) of each finite feature."""
        for name, raw in x.items():
            value = float(raw)
            if not math.isfinite(value):
                continue
            n = self.counts.get(name, 0) + 1
            mean = self.means.get(name, 0.0)
            delta = value - mean
            mean += delta / n
            self.counts[name], self.means[name] = n, mean
            self.m2[name] = self.m2.get(name, 0.0) + delta * (value - mean)

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """Scaled features."""
        scaled: dict[Hashable, Any] = {}
        for name, raw in x.items():
            value = float(raw)
            if not math.isfinite(value):
                scaled[name] = 0.0
                continue
            n = self.counts.get(name, 0)
            if n == 0:
                scaled[name] = 0.0  # nothing known of this feature yet: neutral
                continue
            std = math.sqrt(self.m2.get(name, 0.0) / n) if n > 1 else 0.0
            z = (value - self.means.get(name, 0.0)) / max(std, self.min_std)
            scaled[name] = min(max(z, -self.bound), self.bound)
        return scaled
