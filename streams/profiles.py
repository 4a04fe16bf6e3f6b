"""A shopper's profile and how each behavior event changes it.

Pure logic, no I/O: the stream agent looks up the vectors an event needs and
calls :meth:`UserProfile.apply`. Profiles serialise to small JSON dicts for
the changelogged Faust table (vectors as base64 float32, not JSON floats, to
keep changelog records around 2 KB).
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online_learning.decay import DecayedScores
from ranker.store import UserRow, Vector
from streams.events import Click, Purchase, Search, UserEvent

RECENT_ITEMS = 50
PURCHASED_ITEMS = 200
TOP_AFFINITIES = 32
# Event ids a profile remembers to recognise a re-delivered event: those of
# the last ``dedup_ttl_ms`` of the shopper's event time, at most SEEN_EVENTS.
SEEN_EVENTS = 512
DEDUP_TTL_MS = 24 * 3600 * 1000

# How strongly each kind of event speaks about the shopper's intent.
EVENT_WEIGHT = {"search": 0.6, "click": 1.0, "purchase": 3.0}
# The short-term vector follows the last few actions; the long-term one
# moves slowly and holds the shopper's lasting taste.
SHORT_RATE = 0.35
LONG_RATE = 0.05
PRICE_RATE = 0.2


def event_key(event_id: str) -> int:
    """The 64-bit key a profile remembers an event id by.

    Keys, not ids, are kept: 512 ids with their times were most of a busy
    shopper's ~27 KB changelog record, and every save and load paid for
    them. Two different ids share a key with a chance of about 512 in 2^64
    per event, far below any other way an event can be lost.
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _encode_ints(values: Iterable[int], typecode: str) -> str:
    """Base64 of 64-bit integers, little-endian (``typecode`` Q unsigned, q signed)."""
    packed = array.array(typecode, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _decode_ints(text: str, typecode: str) -> list[int]:
    """Inverse of :func:`_encode_ints`."""
    packed = array.array(typecode)
    packed.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def encode_vector(vector: Vector | None) -> str | None:
    """Base64 of the float32 bytes, or None."""
    return None if vector is None else base64.b64encode(vector.astype(np.float32).tobytes()).decode("ascii")


def decode_vector(text: str | None) -> Vector | None:
    """Inverse of :func:`encode_vector`."""
    return None if text is None else np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()


def _blend(current: Vector | None, signal: Vector, rate: float) -> Vector:
    if current is None or current.shape != signal.shape:
        return signal.astype(np.float32)
    mixed = (1.0 - rate) * current + rate * signal
    norm = float(np.linalg.norm(mixed))
    return (mixed / norm).astype(np.float32) if norm > 0 else signal.astype(np.float32)


@dataclass(frozen=True, slots=True)
class ProductInfo:
    """What a profile update needs to know about a product."""

    vector: Vector
    category: str
    brand: str
    price: float


@dataclass
class UserProfile:
    """Everything streamrec remembers about one shopper."""

    user_id: str
    half_life_ms: float
    short_vector: Vector | None = None
    long_vector: Vector | None = None
    categories: DecayedScores = field(init=False)
    brands: DecayedScores = field(init=False)
    recent_items: list[str] = field(default_factory=list)
    purchased: list[str] = field(default_factory=list)
    recent_queries: list[str] = field(default_factory=list)
    seen_events: dict[int, int] = field(default_factory=dict)  # event_key(event_id) -> event time, oldest first
    last_event_ms: int = 0
    events: int = 0
    price_mean: float | None = None  # geometric running mean of clicked and bought prices
    dedup_ttl_ms: int = DEDUP_TTL_MS

    def __post_init__(self) -> None:
        self.categories = DecayedScores(self.half_life_ms)
        self.brands = DecayedScores(self.half_life_ms)

    def has_seen(self, event_id: str) -> bool:
        """Whether the event was applied already (within ``dedup_ttl_ms`` and ``SEEN_EVENTS`` of this shopper)."""
        return event_key(event_id) in self.seen_events

    def _remember(self, event_id: str, ts: int) -> None:
        # The id lives in the same changelog record as the effect it guards,
        # so an event can never be marked seen without being applied.
        seen = self.seen_events
        seen[event_key(event_id)] = ts
        horizon = self.last_event_ms - self.dedup_ttl_ms
        while seen:  # oldest first; a late event's id waits its turn at the back
            oldest = next(iter(seen))
            if len(seen) <= SEEN_EVENTS and seen[oldest] >= horizon:
                break
            del seen[oldest]

    def apply(self, event: UserEvent, product: ProductInfo | None, query_vector: Vector | None) -> bool:
        """Fold one event into the profile; False if it was already applied.

        ``product`` is the clicked or bought product when it is known;
        ``query_vector`` the embedded query of a search.
        """
        if self.has_seen(event.event_id):
            return False
        self.last_event_ms = max(self.last_event_ms, event.ts)
        self._remember(event.event_id, event.ts)
        self.events += 1
        if isinstance(event, Search):
            self.recent_queries = [*self.recent_queries[-9:], event.query]
            if query_vector is not None:
                self._learn_vector(query_vector, EVENT_WEIGHT["search"])
            return True
        kind = "purchase" if isinstance(event, Purchase) else "click"
        weight = EVENT_WEIGHT[kind]
        if isinstance(event, Click | Purchase):
            self.recent_items = [i for i in self.recent_items if i != event.product_id][-(RECENT_ITEMS - 1) :]
            self.recent_items.append(event.product_id)
            if isinstance(event, Purchase) and event.product_id not in self.purchased:
                self.purchased = [*self.purchased[-(PURCHASED_ITEMS - 1) :], event.product_id]
        if product is not None:
            self._learn_vector(product.vector, weight)
            self._learn_price(product.price, weight)
            self.categories.add(product.category, weight, event.ts)
            self.categories.prune(TOP_AFFINITIES)
            if product.brand:
                self.brands.add(product.brand, weight, event.ts)
                self.brands.prune(TOP_AFFINITIES)
        return True

    def _learn_vector(self, signal: Vector, weight: float) -> None:
        self.short_vector = _blend(self.short_vector, signal, min(1.0, SHORT_RATE * weight))
        self.long_vector = _blend(self.long_vector, signal, min(1.0, LONG_RATE * weight))

    def _learn_price(self, price: float, weight: float) -> None:
        if not price > 0 or not math.isfinite(price):
            return
        if self.price_mean is None:
            self.price_mean = price
            return
        rate = min(1.0, PRICE_RATE * weight)
        self.price_mean = math.exp((1 - rate) * math.log(self.price_mean) + rate * math.log(price))

    def to_row(self, dim: int) -> UserRow:
        """The serving view of this profile for the vector store."""
        zero = np.zeros(dim, dtype=np.float32)
        return UserRow(
            user_id=self.user_id,
            short_vector=self.short_vector if self.short_vector is not None else zero,
            long_vector=self.long_vector if self.long_vector is not None else zero,
            features={
                "categories": self.categories.normalized(top=16),
                "brands": self.brands.normalized(top=16),
                # Whole lists: the ranker excludes every product listed here
                # and pairs the recent ones with their co-visited neighbours.
                "purchased": self.purchased,
                "recent_items": self.recent_items,
                "events": self.events,
                "price_mean": self.price_mean,
            },
            updated_at=self.last_event_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state for the changelogged table, sharing nothing mutable with the profile."""
        return {
            "user_id": self.user_id,
            "short_vector": encode_vector(self.short_vector),
            "long_vector": encode_vector(self.long_vector),
            "categories": dict(self.categories.items()),
            "brands": dict(self.brands.items()),
            "ref_ms": self.categories.ref_ms,
            "brands_ref_ms": self.brands.ref_ms,
            # Copies: a table kept in memory holds this dict itself, and the
            # profile goes on changing (see ``streams.hot_profiles``).
            "recent_items": list(self.recent_items),
            "purchased": list(self.purchased),
            "recent_queries": list(self.recent_queries),
            # Keys and times as packed arrays: a fraction of the bytes of a
            # JSON object of 512 entries, and nothing to walk to encode it.
            "seen_keys": _encode_ints(self.seen_events, "Q"),
            "seen_ts": _encode_ints(self.seen_events.values(), "q"),
            "last_event_ms": self.last_event_ms,
            "events": self.events,
            "price_mean": self.price_mean,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], half_life_ms: float, dedup_ttl_ms: int = DEDUP_TTL_MS) -> UserProfile:
        """Rebuild a profile saved by :meth:`to_dict` (or by an older version: see :func:`_seen`)."""
        last_event_ms = int(data.get("last_event_ms", 0))
        profile = cls(
            user_id=data["user_id"],
            half_life_ms=half_life_ms,
            short_vector=decode_vector(data.get("short_vector")),
            long_vector=decode_vector(data.get("long_vector")),
            recent_items=list(data.get("recent_items", [])),
            purchased=list(data.get("purchased", [])),
            recent_queries=list(data.get("recent_queries", [])),
            seen_events=_seen(data, last_event_ms),
            last_event_ms=last_event_ms,
            events=int(data.get("events", 0)),
            price_mean=data.get("price_mean"),
            dedup_ttl_ms=dedup_ttl_ms,
        )
        profile.categories = DecayedScores(half_life_ms, data.get("categories", {}), int(data.get("ref_ms", 0)))
        profile.brands = DecayedScores(half_life_ms, data.get("brands", {}), int(data.get("brands_ref_ms", 0)))
        return profile


def _seen(data: dict[str, Any], last_event_ms: int) -> dict[int, int]:
    """The remembered event keys of a saved profile, also of one saved by an older version.

    Older versions kept the ids themselves: a JSON object of id to event
    time, and before that a plain list (read at the profile's last event time).
    """
    if "seen_keys" in data:
        return dict(zip(_decode_ints(data["seen_keys"], "Q"), _decode_ints(data["seen_ts"], "q"), strict=True))
    seen = data.get("seen_events", {})
    if isinstance(seen, dict):
        return {event_key(str(k)): int(v) for k, v in seen.items()}
    return dict.fromkeys(map(event_key, map(str, seen)), last_event_ms)
