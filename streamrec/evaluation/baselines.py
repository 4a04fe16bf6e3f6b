"""Baselines measured in the same replay as streamrec: popularity and item co-occurrence.

Each sees the stream one interaction at a time (``observe``) and answers
``recommend`` from what it has observed so far, so none can peek ahead.
Co-occurrence keeps a dense item-by-item matrix: exact and fast up to a few
tens of thousands of items (a catalog past ``MAX_DENSE_ITEMS`` skips them).

>>> from streamrec.evaluation.data import Interaction
>>> pop = Popularity(["a", "b", "c"])
>>> for item in ["b", "b", "c"]:
...     pop.observe(Interaction("u", item, 0, "click"))
>>> pop.recommend("v", 2, frozenset(), now_ms=0)
['b', 'c']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamrec.evaluation.data import Interaction

MAX_DENSE_ITEMS = 20_000


class Baseline(Protocol):
    """A recommender that learns from the replayed stream."""

    name: str

    def observe(self, event: Interaction) -> None:
        """Apply one interaction."""

    def recommend(self, user_id: str, k: int, exclude: frozenset[str], now_ms: int) -> list[str]:
        """The top ``k`` items for the shopper, none in ``exclude``."""


class _Catalog:
    """Item ids and their dense indexes."""

    def __init__(self, items: Sequence[str]) -> None:
        self.ids = list(items)
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}

    def top(self, scores: npt.NDArray[np.float64], k: int, exclude: frozenset[str]) -> list[str]:
        masked = scores.copy()
        for item_id in exclude:
            if (i := self.index.get(item_id)) is not None:
                masked[i] = -np.inf
        # Ties broken by catalog order (stable sort of the negated scores).
        order = np.argsort(-masked, kind="stable")[: k + len(exclude)]
        return [self.ids[i] for i in order if np.isfinite(masked[i])][:k]


class Popularity:
    """Global popularity: items by how many interactions they had so far."""

    name = "popularity"

    def __init__(self, items: Sequence[str]) -> None:
        self._catalog = _Catalog(items)
        self._counts = np.zeros(len(self._catalog.ids))

    def observe(self, event: Interaction) -> None:
        self._counts[self._catalog.index[event.item_id]] += 1.0

    def recommend(self, user_id: str, k: int, exclude: frozenset[str], now_ms: int) -> list[str]:
        return self._catalog.top(self._counts, k, exclude)


class DecayedPopularity:
    """Time-decayed popularity: each interaction's weight halves every ``half_life_ms`` of event time."""

    name = "decayed-popularity"

    def __init__(self, items: Sequence[str], half_life_ms: float) -> None:
        self._catalog = _Catalog(items)
        self._scores = np.zeros(len(self._catalog.ids))
        self._half_life_ms = half_life_ms
        self._ref_ms: int | None = None

    def _advance(self, now_ms: int) -> None:
        if self._ref_ms is None:
            self._ref_ms = now_ms
        elif now_ms > self._ref_ms:
            self._scores *= math.exp2(-(now_ms - self._ref_ms) / self._half_life_ms)
            self._ref_ms = now_ms

    def observe(self, event: Interaction) -> None:
        self._advance(event.ts_ms)
        assert self._ref_ms is not None
        age = max(self._ref_ms - event.ts_ms, 0)
        self._scores[self._catalog.index[event.item_id]] += math.exp2(-age / self._half_life_ms)

    def recommend(self, user_id: str, k: int, exclude: frozenset[str], now_ms: int) -> list[str]:
        return self._catalog.top(self._scores, k, exclude)


class CoOccurrence:
    """Item-to-item co-occurrence over each shopper's whole history so far.

    A candidate scores the sum, over the shopper's items, of how many
    shoppers had both; ``cosine`` divides each count by ``sqrt(n_i * n_j)``.
    A shopper with no history gets global popularity.
    """

    def __init__(self, items: Sequence[str], cosine: bool) -> None:
        if len(items) > MAX_DENSE_ITEMS:
            raise ValueError(f"{len(items)} items is past the dense co-occurrence limit of {MAX_DENSE_ITEMS}")
        self.name = "cooccurrence-cosine" if cosine else "cooccurrence"
        self._cosine = cosine
        self._catalog = _Catalog(items)
        size = len(self._catalog.ids)
        self._pairs = np.zeros((size, size), dtype=np.float32)
        self._counts = np.zeros(size)
        self._history: dict[str, list[int]] = {}
        self._seen: dict[str, set[int]] = {}

    def observe(self, event: Interaction) -> None:
        item = self._catalog.index[event.item_id]
        seen = self._seen.setdefault(event.user_id, set())
        if item in seen:
            return  # a shopper's repeat of an item is no new pair
        history = self._history.setdefault(event.user_id, [])
        if history:
            others = np.asarray(history)
            self._pairs[item, others] += 1.0
            self._pairs[others, item] += 1.0
        history.append(item)
        seen.add(item)
        self._counts[item] += 1.0

    def recommend(self, user_id: str, k: int, exclude: frozenset[str], now_ms: int) -> list[str]:
        history = self._history.get(user_id)
        if not history:
            return self._catalog.top(self._counts, k, exclude)
        # One matrix-vector product over the whole catalog: constant time
        # however long the shopper's history (MovieLens has 700-item ones).
        weights = np.zeros(len(self._counts), dtype=np.float32)
        norms = np.sqrt(np.maximum(self._counts, 1.0))
        weights[np.asarray(history)] = 1.0 / norms[np.asarray(history)] if self._cosine else 1.0
        scores = (weights @ self._pairs).astype(np.float64)
        if self._cosine:
            scores /= norms
        # Ties (and shoppers whose items nobody shares) fall back to popularity.
        scores += 1e-9 * self._counts / max(float(self._counts.max()), 1.0)
        return self._catalog.top(scores, k, exclude)
