"""Candidate sources of a recommendation list: co-visitation, popularity and content, merged.

* **covisit**: products that shoppers touched around the ones this shopper
  touched last (``ItemRow.neighbors``, updated by the stream per event):
  ``sum_i w_i * C(i, j) / N(i)``, how often a shopper of ``i`` went on to
  ``j``, over the recent products ``i``, the newest weighing most
  (``w_i = 1 / sqrt(rank)``). That favours popular products; the ranker
  also gets the cosine form ``C(i, j) / sqrt(N(i) * N(j))`` and popularity
  as features and learns how much to damp them.
* **popular**: decayed popularity, merged from every partition's list; what a
  new shopper sees, and the fallback when the others find too little.
* **content**: the shopper vector's nearest products in Milvus, the only
  source that can find a new product nobody has touched yet.

Decayed values are stored as of their row's time and brought to ``now_ms``
here, so rows written at different times compare fairly.

>>> rows = {"a": ItemRow("a", 4.0, {"b": 2.0}, 0), "b": ItemRow("b", 1.0, {"a": 2.0}, 0)}
>>> conditional, partial = covisit_scores(["a"], rows, now_ms=0, half_life_ms=1000)
>>> conditional["b"], round(normalise_covisits(partial, rows, now_ms=0, half_life_ms=1000)["b"], 3)
(0.5, 1.0)
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ranker.store import ItemRow, PopularList

# Recent products whose neighbours are looked up per request.
HISTORY = 50


@dataclass(slots=True)
class Candidate:
    """A product proposed by one or more sources, with what they know about it."""

    product_id: str
    sources: set[str] = field(default_factory=set)
    similarity: float | None = None
    covisitation: float = 0.0  # conditional form
    covisit_cosine: float = 0.0


def decay(ref_ms: int, now_ms: float, half_life_ms: float) -> float:
    """Factor that brings a value stated at ``ref_ms`` to ``now_ms`` (1 for a time before it).

    >>> decay(0, 2000, 1000)
    0.25
    """
    return math.exp2(-max(now_ms - ref_ms, 0.0) / half_life_ms)


def covisit_scores(
    history: Sequence[str], rows: Mapping[str, ItemRow], now_ms: float, half_life_ms: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Two sums over the recent products ``i`` (newest last) for every neighbour ``j``, as of ``now_ms``.

    The first is ``sum_i w_i * C(i, j) / N(i)``, where each row's decay
    cancels; the second ``sum_i w_i * C(i, j) / sqrt(N(i))``, where a square
    root of it remains, and which :func:`normalise_covisits` turns into the
    cosine form.
    """
    conditional: dict[str, float] = {}
    partial: dict[str, float] = {}
    recent = list(dict.fromkeys(reversed(history[-HISTORY:])))  # newest first, each once
    for rank, item_id in enumerate(recent, start=1):
        row = rows.get(item_id)
        if row is None or not row.popularity > 0:
            continue
        weight = 1.0 / math.sqrt(rank)
        by_count = weight / row.popularity
        by_root = weight * math.sqrt(decay(row.ref_ms, now_ms, half_life_ms) / row.popularity)
        for other, count in row.neighbors.items():
            conditional[other] = conditional.get(other, 0.0) + count * by_count
            partial[other] = partial.get(other, 0.0) + count * by_root
    return conditional, partial


def normalise_covisits(
    raw: Mapping[str, float], rows: Mapping[str, ItemRow], now_ms: float, half_life_ms: float
) -> dict[str, float]:
    """Divide each raw score by ``sqrt(N(j))``; a product with no row of its own keeps 0."""
    scores = {}
    for item_id, value in raw.items():
        row = rows.get(item_id)
        if row is not None and row.popularity > 0:
            scores[item_id] = value / math.sqrt(row.popularity * decay(row.ref_ms, now_ms, half_life_ms))
    return scores


def popular_items(lists: Iterable[PopularList], now_ms: float, half_life_ms: float) -> dict[str, float]:
    """Every partition's popular products with their decayed popularity as of ``now_ms``, most popular first."""
    merged: dict[str, float] = {}
    for popular in lists:
        factor = decay(popular.ref_ms, now_ms, half_life_ms)
        for item_id, score in popular.items.items():
            merged[item_id] = max(merged.get(item_id, 0.0), score * factor)
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


class PopularRanking:
    """The merged popular lists, most popular first, with scores as of ``ref_ms`` (the newest list's time).

    Lists are decayed from their own times, so merged as of any later time
    every score carries the same factor and the order holds: the ranking is
    made once per change of the lists, not once per request. Under traffic
    the lists change about as often as they are read, so the merge itself is
    lazy: :meth:`top` walks the lists, each sorted once, in step (a heap
    merge) and stops at ``limit``; the full order and scores are made only
    when asked for (a new shopper's list).
    """

    __slots__ = ("_ids", "_ranked", "_scores", "lists", "ref_ms")

    def __init__(self, lists: tuple[PopularList, ...], half_life_ms: float) -> None:
        self.lists = lists
        self.ref_ms = max((popular.ref_ms for popular in lists), default=0)
        # Each list as (-score as of ref_ms, id), best first: already in that
        # order as the stream writes them, so the sort is one linear pass.
        self._ranked = [
            sorted(
                (-score * factor, item_id)
                for factor in (decay(popular.ref_ms, self.ref_ms, half_life_ms),)
                for item_id, score in popular.items.items()
            )
            for popular in lists
        ]
        self._ids: tuple[str, ...] | None = None
        self._scores: dict[str, float] | None = None

    @classmethod
    def of(cls, lists: Iterable[PopularList], half_life_ms: float) -> PopularRanking:
        """Merge ``lists`` as of the newest of them."""
        return cls(tuple(lists), half_life_ms)

    def _merged(self) -> Iterator[tuple[str, float]]:
        """(id, score) most popular first, ties by id; a product in several lists once, at its best score."""
        listed: set[str] = set()
        for negated, item_id in heapq.merge(*self._ranked):
            if item_id not in listed:
                listed.add(item_id)
                yield item_id, -negated

    @property
    def scores(self) -> dict[str, float]:
        """Every listed product's merged score as of :attr:`ref_ms`, most popular first (:func:`popular_items`)."""
        if self._scores is None:
            self._scores = dict(self._merged())
        return self._scores

    @property
    def ids(self) -> tuple[str, ...]:
        """Every listed product, most popular first."""
        if self._ids is None:
            self._ids = tuple(self.scores)
        return self._ids

    def top(self, limit: int, exclude: frozenset[str]) -> list[str]:
        """The ``limit`` most popular ids not in ``exclude``, as :func:`top` of :func:`popular_items` gives them."""
        ranked = (item_id for item_id, _ in self._merged() if item_id not in exclude)
        return list(itertools.islice(ranked, limit))

    def score(self, item_id: str, now_ms: float, half_life_ms: float) -> float:
        """The product's merged decayed popularity as of ``now_ms`` (0 when it is in no list)."""
        return self.scores.get(item_id, 0.0) * decay(self.ref_ms, now_ms, half_life_ms)


def popularity(row: ItemRow | None, now_ms: float, half_life_ms: float) -> float:
    """A product's decayed popularity as of ``now_ms`` (0 when nobody touched it)."""
    return 0.0 if row is None else row.popularity * decay(row.ref_ms, now_ms, half_life_ms)


def top(scores: Mapping[str, float], limit: int, exclude: frozenset[str]) -> list[str]:
    """The ``limit`` best-scored ids not in ``exclude``, best first, ties by id."""
    ranked = sorted((kv for kv in scores.items() if kv[0] not in exclude), key=lambda kv: (-kv[1], kv[0]))
    return [item_id for item_id, _ in ranked[:limit]]
