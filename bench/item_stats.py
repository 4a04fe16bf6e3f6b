"""Examples/s the learner's item statistics absorb as the catalog grows.

Each learned example records a view (and maybe a click) of one item at the
example's time. Baseline: decaying every stored score to the new time on
each update (how ``DecayedScores`` worked before its landmark), which costs
O(items) per example. Candidate: ``online_learning.item_stats.ItemStats`` as
shipped. Both run the same examples in one process; the ratio is printed.

    python bench/item_stats.py [--items 1000 10000 100000] [--examples 20000]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

from online_learning.item_stats import ItemStats

HALF_LIFE_MS = 86_400_000.0


class RescaleAll:
    """The baseline: scores kept as of the newest time, all rescaled when time moves."""

    def __init__(self) -> None:
        self.views: dict[str, float] = {}
        self.clicks: dict[str, float] = {}
        self.ref_ms = 0

    def _add(self, scores: dict[str, float], name: str, amount: float, at_ms: int) -> dict[str, float]:
        if at_ms > self.ref_ms:
            factor = math.exp2(-(at_ms - self.ref_ms) / HALF_LIFE_MS)
            scores = {key: value * factor for key, value in scores.items()}
        else:
            amount *= math.exp2(-(self.ref_ms - at_ms) / HALF_LIFE_MS)
        scores[name] = scores.get(name, 0.0) + amount
        return scores

    def record(self, product_id: str, viewed: float, clicked: float, at_ms: int) -> None:
        self.views = self._add(self.views, product_id, viewed, at_ms)
        if clicked:
            self.clicks = self._add(self.clicks, product_id, clicked, at_ms)
        self.ref_ms = max(self.ref_ms, at_ms)


def _examples(items: int, count: int, seed: int) -> list[tuple[str, float, float, int]]:
    rng = random.Random(seed)
    start = 1_767_225_600_000
    return [
        (f"product-{rng.randrange(items):06d}", 1.0, float(rng.random() < 0.1), start + n * 50) for n in range(count)
    ]


def _rate(stats: ItemStats | RescaleAll, warm: int, examples: list[tuple[str, float, float, int]]) -> float:
    for n in range(warm):  # every item known before timing, as in a long-running learner
        stats.record(f"product-{n:06d}", 1.0, 0.0, 1_767_225_600_000)
    started = time.perf_counter()
    for product_id, viewed, clicked, at_ms in examples:
        stats.record(product_id, viewed, clicked, at_ms)
    return len(examples) / (time.perf_counter() - started)


def main() -> None:
    """Print examples/s of both ways per catalog size, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    for items in args.items:
        # The baseline is O(items) per example: give it fewer so the run ends.
        baseline_examples = max(200, min(args.examples, 2_000_000 // items))
        baseline = _rate(RescaleAll(), items, _examples(items, baseline_examples, 1))
        shipped = _rate(ItemStats(HALF_LIFE_MS / 1000), items, _examples(items, args.examples, 1))
        print(
            json.dumps(
                {
                    "items": items,
                    "baseline_examples_per_s": round(baseline),
                    "shipped_examples_per_s": round(shipped),
                    "ratio": round(shipped / baseline, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
