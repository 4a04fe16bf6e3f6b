"""Join impressions with the clicks and purchases that follow them into labeled examples.

State is one JSON-ready dict per user (a Faust table value), changed only
through :class:`JoinState`. Rules:

* a click on a shown item is a positive (weight 1), a purchase a stronger one
  (its weight tops the item's total up to ``PURCHASE_WEIGHT``);
* items shown above a clicked one and not clicked are negatives at once;
* items still unlabeled when the attribution window closes are negatives;
* a click that names an impression not seen yet waits (bounded) for it;
* every (impression, item, kind) pair is emitted once, so replays and
  duplicates change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLICK_WEIGHT = 1.0
PURCHASE_WEIGHT = 3.0
MAX_IMPRESSIONS = 50
MAX_PENDING = 50


@dataclass(frozen=True, slots=True)
class Example:
    """One labeled training example."""

    example_id: str
    product_id: str
    features: dict[str, float]
    label: bool
    weight: float
    ts: int
    first: bool  # the first example of this item in this impression (counts as a view)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the examples topic."""
        return {
            "example_id": self.example_id,
            "product_id": self.product_id,
            "features": self.features,
            "label": self.label,
            "weight": self.weight,
            "ts": self.ts,
            "first": self.first,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["example_id"]),
            str(data["product_id"]),
            {str(k): float(v) for k, v in data["features"].items()},
            bool(data["label"]),
            float(data["weight"]),
            int(data["ts"]),
            bool(data["first"]),
        )


class JoinState:
    """One user's open impressions and waiting labels."""

    def __init__(self, data: dict[str, Any] | None, window_ms: int) -> None:
        self.data: dict[str, Any] = data if data is not None else {"impressions": {}, "pending": []}
        self.window_ms = window_ms
        # Whether any call changed ``data``: an unchanged state (a click with
        # nothing to join) is not written back, so it costs no changelog record.
        self.changed = False

    @property
    def impressions(self) -> dict[str, Any]:
        """Open impressions by request id."""
        opened: dict[str, Any] = self.data["impressions"]
        return opened

    def add_impression(self, request_id: str, ts: int, items: list[dict[str, Any]], now_ms: int) -> list[Example]:
        """Open an impression; apply labels that were waiting for it."""
        if request_id in self.impressions or request_id in self.data.get("closed", []):
            return []
        self.changed = True
        self.impressions[request_id] = {
            "ts": ts,
            "deadline": now_ms + self.window_ms,
            "items": {
                item["product_id"]: {"position": item["position"], "features": item["features"]} for item in items
            },
            "given": {},  # product_id -> label weight emitted so far (0.0 = negative)
        }
        examples: list[Example] = []
        # Expired labels are dropped here too: close_expired only runs for users with open impressions.
        waiting = [p for p in self.data["pending"] if p["request_id"] == request_id and p["until"] > now_ms]
        self.data["pending"] = [p for p in self.data["pending"] if p["request_id"] != request_id]
        for label in waiting:
            examples += self.add_label(label["request_id"], label["product_id"], label["weight"], label["ts"], now_ms)
        if len(self.impressions) > MAX_IMPRESSIONS:
            # Close the oldest early rather than drop it: its unlabeled items are
            # still negatives, and a replay of it must not reopen it.
            examples += self._close(min(self.impressions, key=lambda rid: self.impressions[rid]["ts"]))
        return examples

    def add_label(self, request_id: str | None, product_id: str, weight: float, ts: int, now_ms: int) -> list[Example]:
        """A click (weight 1) or purchase (weight 3) on a product, maybe naming its impression."""
        if request_id is None:
            target = self._latest_showing(product_id)
        else:
            # Only the named impression: another one showing the same product
            # is a different list, and the click must wait for its own.
            target = request_id if request_id in self.impressions else None
        if target is None:
            if request_id is not None:
                pending = [
                    *self.data["pending"],
                    {
                        "request_id": request_id,
                        "product_id": product_id,
                        "weight": weight,
                        "ts": ts,
                        "until": now_ms + self.window_ms,
                    },
                ]
                self.data["pending"] = pending[-MAX_PENDING:]
                self.changed = True
            return []
        impression = self.impressions[target]
        items = impression["items"]
        if product_id not in items:
            return []
        given: dict[str, float] = impression["given"]
        examples = []
        extra = weight - given.get(product_id, 0.0)
        if extra > 0:
            examples.append(
                self._example(target, product_id, label=True, weight=extra, ts=ts, first=product_id not in given)
            )
            given[product_id] = weight
            self.changed = True
        clicked_position = items[product_id]["position"]
        for other, item in items.items():
            if item["position"] < clicked_position and other not in given:
                examples.append(self._example(target, other, label=False, weight=1.0, ts=ts, first=True))
                given[other] = 0.0
                self.changed = True
        return examples

    def _latest_showing(self, product_id: str) -> str | None:
        showing = [rid for rid, imp in self.impressions.items() if product_id in imp["items"]]
        # Impressions are kept in the order they opened, so among lists of the
        # same event time the one opened last is the newest. Logs with second
        # resolution hold many such ties (MovieLens: half its purchases share
        # the second of the shopper's previous event); taking the first of them
        # labelled a list older than the one the shopper acted on.
        return max(reversed(showing), key=lambda rid: self.impressions[rid]["ts"]) if showing else None

    def _example(
        self, request_id: str, product_id: str, *, label: bool, weight: float, ts: int, first: bool
    ) -> Example:
        item = self.impressions[request_id]["items"][product_id]
        kind = "neg" if not label else f"pos{weight:g}"
        return Example(
            f"{request_id}:{product_id}:{kind}", product_id, dict(item["features"]), label, weight, ts, first
        )

    def close_expired(self, now_ms: int) -> list[Example]:
        """Close impressions past their window: unlabeled items become negatives."""
        examples = []
        for request_id in [rid for rid, imp in self.impressions.items() if imp["deadline"] <= now_ms]:
            examples += self._close(request_id)
        pending = [p for p in self.data["pending"] if p["until"] > now_ms]
        if len(pending) != len(self.data["pending"]):
            self.data["pending"] = pending
            self.changed = True
        return examples

    def _close(self, request_id: str) -> list[Example]:
        impression = self.impressions[request_id]
        examples = [
            self._example(request_id, product_id, label=False, weight=1.0, ts=impression["ts"], first=True)
            for product_id in impression["items"]
            if product_id not in impression["given"]
        ]
        del self.impressions[request_id]
        self.changed = True
        # Remember a few closed ids so a replayed impression is not reopened.
        self.data["closed"] = [*self.data.get("closed", []), request_id][-MAX_IMPRESSIONS:]
        return examples

    def next_deadline(self) -> int | None:
        """When the earliest open impression closes."""
        deadlines = [imp["deadline"] for imp in self.impressions.values()]
        return min(deadlines) if deadlines else None
