"""Ranking metrics for a prequential replay, with one relevant item (the purchase) per request.

>>> metrics = MetricSet()
>>> metrics.add(Request(index=0, total=1, target="b", ranked=("a", "b"), cold=False, latency_s=0.004))
>>> summary = metrics.summary(catalog_size=4)
>>> summary["hit_rate@10"], summary["mrr"], summary["coverage"], summary["latency_p50_ms"]
(1.0, 0.5, 0.5, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DECILES = 10
_HIT_K = 10  # hit rate, NDCG and coverage look at what a shopper sees: the first ten
_RECALL_K = 20


@dataclass(frozen=True, slots=True)
class Request:
    """One ranking asked for just before a purchase, and what came back."""

    index: int  # position of the event in the stream, 0-based
    total: int  # stream length, to place the request in a decile
    target: str  # the purchased item
    ranked: tuple[str, ...]  # the returned top-k, best first
    cold: bool  # the shopper had fewer than 5 prior events
    latency_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.total:
            raise ValueError(f"request index {self.index} is outside a stream of {self.total} events")

    @property
    def rank(self) -> int | None:
        """The 1-based position of the target in ``ranked``, or None when it is absent."""
        try:
            return self.ranked.index(self.target) + 1
        except ValueError:
            return None

    @property
    def decile(self) -> int:
        """Which tenth of the stream the request falls in, 0 to 9."""
        return self.index * DECILES // self.total


def hit(rank: int | None, k: int) -> float:
    """1 when the target is in the top ``k``; with one relevant item this is also recall@k.

    >>> hit(10, 10), hit(11, 10), hit(None, 10)
    (1.0, 0.0, 0.0)
    """
    return 1.0 if rank is not None and rank <= k else 0.0


def ndcg(rank: int | None, k: int) -> float:
    """NDCG@k of one relevant item: 1/log2(rank + 1) inside the top ``k``, else 0 (the ideal DCG is 1).

    >>> ndcg(1, 10), ndcg(3, 10), ndcg(11, 10)
    (1.0, 0.5, 0.0)
    """
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None) -> float:
    """1/rank over the whole returned list, 0 when the target is absent.

    >>> reciprocal_rank(4), reciprocal_rank(None)
    (0.25, 0.0)
    """
    return 1.0 / rank if rank is not None else 0.0


class MetricSet:
    """Running sums of the ranking metrics of a stream of requests; ``add`` is O(k)."""

    def __init__(self) -> None:
        self._requests = 0
        self._hits = 0.0
        self._ndcg = 0.0
        self._recall = 0.0
        self._reciprocal_ranks = 0.0
        self._shown: set[str] = set()
        self._latencies_s: list[float] = []

    def add(self, request: Request) -> None:
        """Count one request."""
        rank = request.rank
        self._requests += 1
        self._hits += hit(rank, _HIT_K)
        self._ndcg += ndcg(rank, _HIT_K)
        self._recall += hit(rank, _RECALL_K)
        self._reciprocal_ranks += reciprocal_rank(rank)
        self._shown.update(request.ranked[:_HIT_K])
        self._latencies_s.append(request.latency_s)

    def summary(self, catalog_size: int) -> dict[str, float]:
        """Mean of each metric, catalog coverage of the top ten and latency percentiles; zeros when empty."""
        n = self._requests
        if n == 0:
            latency_p50_ms = latency_p99_ms = 0.0
        else:
            latencies_ms = np.asarray(self._latencies_s, dtype=np.float64) * 1000.0
            latency_p50_ms, latency_p99_ms = (float(p) for p in np.percentile(latencies_ms, [50, 99], method="linear"))
        return {
            "requests": n,
            "hit_rate@10": self._hits / n if n else 0.0,
            "ndcg@10": self._ndcg / n if n else 0.0,
            "recall@20": self._recall / n if n else 0.0,
            "mrr": self._reciprocal_ranks / n if n else 0.0,
            "coverage": len(self._shown) / catalog_size if catalog_size else 0.0,
            "latency_p50_ms": latency_p50_ms,
            "latency_p99_ms": latency_p99_ms,
        }


class _MethodResults:
    """One method's requests, counted overall, for cold shoppers and per decile of the stream."""

    __slots__ = ("cold", "deciles", "overall")

    def __init__(self) -> None:
        self.overall = MetricSet()
        self.cold = MetricSet()
        self.deciles = [MetricSet() for _ in range(DECILES)]


class Evaluation:
    """Per-method metrics of one replay; methods keep the order they were first added in."""

    def __init__(self, catalog_size: int) -> None:
        self.catalog_size = catalog_size
        self._results: dict[str, _MethodResults] = {}

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods seen, in the order first added."""
        return tuple(self._results)

    def add(self, method: str, request: Request) -> None:
        """Count one request answered by ``method``."""
        results = self._results.setdefault(method, _MethodResults())
        results.overall.add(request)
        if request.cold:
            results.cold.add(request)
        results.deciles[request.decile].add(request)

    def overall(self, method: str) -> dict[str, float]:
        """The summary of all of ``method``'s requests."""
        return self._method(method).overall.summary(self.catalog_size)

    def cold(self, method: str) -> dict[str, float]:
        """The summary of ``method``'s requests from shoppers with fewer than 5 prior events."""
        return self._method(method).cold.summary(self.catalog_size)

    def by_decile(self, method: str) -> list[dict[str, float]]:
        """Ten summaries, one per tenth of the stream in time order (empty tenths are zeros)."""
        return [decile.summary(self.catalog_size) for decile in self._method(method).deciles]

    def _method(self, method: str) -> _MethodResults:
        try:
            return self._results[method]
        except KeyError:
            raise KeyError(f"no requests for method {method!r}; methods: {', '.join(self._results)}") from None
