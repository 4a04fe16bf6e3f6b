"""Item-to-item co-visitation and item popularity, learned from the behavior stream.

When a shopper clicks or buys a product, it is paired with each of the
products they touched just before (their recent history, newest first), in
both directions, with the event's weight, less the further apart the two
were. Counts decay with event time, so what shoppers do this week
outweighs last season. Each product keeps its strongest neighbours only, so
memory per product is bounded however large the catalog grows.

The shopper's history lives in the profile (partitioned by shopper) while a
product's counts live with the product (partitioned by product): the behavior
side folds a batch into :class:`ItemDeltas`, which travel to the product's
partition, where :class:`ItemState` applies them.

>>> deltas = ItemDeltas()
>>> deltas.add(["a", "b"], "c", weight=1.0, ts=0)
>>> sorted((k, round(v, 3)) for k, v in deltas.items["c"].neighbors.items())
[('a', 0.707), ('b', 1.0)]
>>> state = ItemState.new(half_life_ms=1000)
>>> state.apply(deltas.items["c"])
>>> state.to_row("c").neighbors["b"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from online_learning.decay import DecayedScores
from ranker.store import ItemRow

# Pairs with the last few products only: older history says less about what
# belongs together, and each click costs O(HISTORY) pair updates.
HISTORY = 20
# Neighbours served per product (about 3 KB of JSON, well inside Milvus'
# 64 KB field limit); up to twice as many are kept so one that slips below
# the cut can come back without starting from zero.
MAX_NEIGHBORS = 100


def pair_weight(distance: int) -> float:
    """Weight of a pair whose products were touched ``distance`` events apart (1 = consecutive).

    Gently falling: shoppers browse in sessions whose order says little, so
    the tenth product back still belongs with this one.

    >>> pair_weight(1), pair_weight(4)
    (1.0, 0.5)
    """
    return 1.0 / math.sqrt(distance)


def _valid(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def _valid_weights(raw: object) -> dict[str, float]:
    """The valid weights of a decoded ``{name: weight}`` object; invalid ones dropped, a non-object raises.

    Every weight is normally valid: two passes in C (a sum, finite only if
    every weight is a finite number, and a minimum) take the object as it
    is. Checking weight by weight in Python cost a tenth of the item
    stream's CPU.
    """
    weights: dict[str, float] = dict(raw)  # type: ignore[call-overload]  # what is not an object raises, as before
    try:
        if math.isfinite(sum(weights.values())) and min(weights.values(), default=0.0) >= 0:
            return weights  # names as decoded: a JSON object's are strings
    except TypeError:  # a weight that is not a number: checked one by one below
        pass
    return {str(k): float(v) for k, v in weights.items() if _valid(v)}


@dataclass(slots=True)
class ItemDelta:
    """A batch's changes to one product: added popularity and neighbour weights, as of ``ts``."""

    popularity: float = 0.0
    neighbors: dict[str, float] = field(default_factory=dict)
    ts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the item stream."""
        return {"n": self.popularity, "co": self.neighbors, "ts": self.ts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemDelta:
        """Inverse of :meth:`to_dict`; non-finite or negative weights are dropped."""
        neighbors = _valid_weights(data.get("co", {}))
        popularity = data.get("n", 0.0)
        return cls(float(popularity) if _valid(popularity) else 0.0, neighbors, int(data.get("ts", 0)))


@dataclass(slots=True)
class ItemDeltas:
    """Co-visitation and popularity changes folded from a batch of events, by product."""

    items: dict[str, ItemDelta] = field(default_factory=dict)

    def _delta(self, item_id: str, ts: int) -> ItemDelta:
        delta = self.items.get(item_id)
        if delta is None:
            delta = self.items[item_id] = ItemDelta(ts=ts)
        # Within a batch events are milliseconds apart against a half-life of
        # days: counting them all at the batch's latest time changes nothing
        # measurable and keeps one record per product.
        delta.ts = max(delta.ts, ts)
        return delta

    def add(self, history: Sequence[str], item_id: str, weight: float, ts: int) -> None:
        """Count an event on ``item_id`` by a shopper whose earlier products were ``history`` (oldest first)."""
        target = self._delta(item_id, ts)
        target.popularity += weight
        seen = {item_id}
        for distance, other in enumerate(reversed(history[-HISTORY:]), start=1):
            if other in seen:
                continue
            seen.add(other)
            amount = weight * pair_weight(distance)
            target.neighbors[other] = target.neighbors.get(other, 0.0) + amount
            back = self._delta(other, ts)
            back.neighbors[item_id] = back.neighbors.get(item_id, 0.0) + amount

    def __bool__(self) -> bool:
        return bool(self.items)


class ItemState:
    """One product's decayed popularity and neighbour weights (a table value)."""

    __slots__ = ("neighbors", "offset", "popularity")

    def __init__(self, popularity: DecayedScores, neighbors: DecayedScores, offset: int = -1) -> None:
        self.popularity = popularity  # one name, "": a decayed scalar with the same arithmetic
        self.neighbors = neighbors
        self.offset = offset  # of the last item-topic message applied (see ``streams.items``)

    @classmethod
    def new(cls, half_life_ms: float) -> ItemState:
        """A product nobody has touched yet."""
        return cls(DecayedScores(half_life_ms), DecayedScores(half_life_ms))

    def apply(self, delta: ItemDelta) -> None:
        """Add a batch's changes."""
        if delta.popularity:
            self.popularity.add("", delta.popularity, delta.ts)
        self.neighbors.add_many(delta.neighbors, delta.ts)
        self.neighbors.prune(2 * MAX_NEIGHBORS)

    @property
    def ref_ms(self) -> int:
        """The latest event time either count saw."""
        return max(self.popularity.ref_ms, self.neighbors.ref_ms)

    def to_row(self, item_id: str) -> ItemRow:
        """The serving view: popularity and the strongest neighbours, all as of :attr:`ref_ms`."""
        at = self.ref_ms
        # One factor for all neighbours (a get per neighbour cost most of the item stream's publish).
        ranked = sorted(self.neighbors.items_at(at), key=lambda kv: (-kv[1], kv[0]))[:MAX_NEIGHBORS]
        return ItemRow(item_id, self.popularity.get("", at), dict(ranked), at)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state for the changelogged table."""
        return {
            "n": self.popularity.get(""),
            "n_ref": self.popularity.ref_ms,
            "co": dict(self.neighbors.items()),
            "co_ref": self.neighbors.ref_ms,
            "off": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], half_life_ms: float) -> ItemState:
        """Inverse of :meth:`to_dict`."""
        popularity = DecayedScores(half_life_ms, {"": float(data.get("n", 0.0))}, int(data.get("n_ref", 0)))
        neighbors = DecayedScores(half_life_ms, dict(data.get("co", {})), int(data.get("co_ref", 0)))
        return cls(popularity, neighbors, int(data.get("off", -1)))
