"""The Kafka side: event contract, profiles, Faust agents and topics."""

from __future__ import annotations

from streams.events import Click, ProductDelete, ProductUpsert, Purchase, Rejection, Search, decode, json_schema
from streams.profiles import ProductInfo, UserProfile
from streams.settings import StreamSettings

__all__ = [
    "Click",
    "ProductDelete",
    "ProductInfo",
    "ProductUpsert",
    "Purchase",
    "Rejection",
    "Search",
    "StreamSettings",
    "UserProfile",
    "decode",
    "json_schema",
]
