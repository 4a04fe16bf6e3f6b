"""The Kafka event contract and its decoder.

Decoding never raises: raw bytes become an event or a :class:`Rejection`
carrying a machine-readable reason, so a bad message can be dead-lettered
before anything else happens to it.

>>> decode("clicks", b'{"event_id": "e1", "ts": 1767225600000, "schema_version": 1,'
...        b' "user_id": "u1", "product_id": "p1"}').product_id
'p1'
>>> decode("clicks", b"not json").reason
'invalid_json'
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from streamrec.ids import ID_PATTERN

EventKind = Literal["products", "searches", "clicks", "purchases", "impressions"]
EVENT_KINDS: tuple[EventKind, ...] = ("products", "searches", "clicks", "purchases", "impressions")

MAX_EVENT_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
SUPPORTED_SCHEMA_VERSIONS = (1,)

# Epoch values below this are taken as seconds: 1e11 ms is March 1973, and
# 1e11 s is the year 5138, so no real timestamp is ambiguous.
_SECONDS_CUTOFF = 100_000_000_000
# The last millisecond of year 9999, the latest instant ISO-8601 can name;
# anything later is garbage that would overflow INT64 columns downstream.
_MAX_TS_MS = 253_402_300_799_999
# Control characters, and lone surrogates (JSON "\ud800"), which no UTF-8
# encoder downstream can write.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]+")


def parse_ts(value: object) -> int:
    """Return epoch milliseconds from epoch ms, epoch s or an ISO-8601 string.

    Naive ISO timestamps are taken as UTC.

    >>> parse_ts(1767225600)
    1767225600000
    >>> parse_ts("2026-01-01T00:00:00")
    1767225600000
    """
    if isinstance(value, bool):
        raise ValueError("ts must be a number or an ISO-8601 string, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("ts must be a finite, non-negative epoch")
        ms = int(value * 1000) if value < _SECONDS_CUTOFF else int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("ts is not ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = int(parsed.timestamp() * 1000)
    else:
        raise ValueError("ts must be a number or an ISO-8601 string")
    if not 0 <= ms <= _MAX_TS_MS:
        raise ValueError("ts must be between 1970 and the end of year 9999")
    return ms


def _clean_text(value: object) -> object:
    """Fold runs of control characters and lone surrogates to one space and trim."""
    if isinstance(value, str):
        return _CONTROL_CHARS.sub(" ", value).strip()
    return value


def _exact_int(value: object) -> object:
    """Refuse ``true`` and ``1.0`` where an integer is meant."""
    if type(value) is not int:
        raise ValueError("must be an integer")
    return value


Timestamp = Annotated[
    int,
    BeforeValidator(parse_ts),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "format": "date-time"}],
            "description": "epoch milliseconds (values below 1e11 are read as seconds) or ISO-8601",
        }
    ),
]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Text = Annotated[str, BeforeValidator(_clean_text)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Event(BaseModel):
    # Unknown extra fields are accepted and ignored: producers may add fields
    # before we learn to read them.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)

    event_id: Id
    ts: Timestamp
    schema_version: Annotated[Literal[1], BeforeValidator(_exact_int)]


class ProductUpsert(_Event):
    """A product was created or changed in the catalog."""

    op: Literal["upsert"] = "upsert"
    product_id: Id
    title: Annotated[Text, Field(min_length=1, max_length=512)]
    description: Annotated[Text, Field(max_length=4096)] = ""
    category: Annotated[Text, Field(min_length=1, max_length=64)]
    brand: Annotated[Text, Field(max_length=64)] = ""
    price: Price
    in_stock: bool = True

    def text(self) -> str:
        """The text the encoder embeds for this product."""
        return f"{self.title}. {self.category.replace('-', ' ')}. {self.description}".strip()


class ProductDelete(_Event):
    """A product left the catalog."""

    op: Literal["delete"]
    product_id: Id


class Search(_Event):
    """A shopper searched."""

    user_id: Id
    query: Annotated[Text, Field(min_length=1, max_length=512)]


class Click(_Event):
    """A shopper clicked a product, usually from a result list."""

    user_id: Id
    product_id: Id
    request_id: Id | None = None
    position: Annotated[int, Field(ge=1)] | None = None


class Purchase(_Event):
    """A shopper bought a product."""

    user_id: Id
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    price: Price | None = None


def _product_op(value: Any) -> str | None:
    # A plain ``Field(discriminator="op")`` requires ``op``; products without
    # it are upserts, as the field's default says.
    op = value.get("op", "upsert") if isinstance(value, dict) else getattr(value, "op", None)
    return op if isinstance(op, str) else None


FeatureValue = Annotated[float, Field(allow_inf_nan=False)]


class ImpressionItem(BaseModel):
    """One item of a served result list."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    product_id: Id
    position: Annotated[int, Field(ge=1)]
    features: Annotated[dict[str, FeatureValue], Field(max_length=64)]


class Impression(_Event):
    """A result list the API served (written by the API; ``event_id`` is the request id)."""

    user_id: Id
    query: Annotated[Text, Field(max_length=512)] | None = None
    surface: Literal["search", "recommendations"]
    model_version: Annotated[int, Field(ge=0)] = 0
    items: Annotated[list[ImpressionItem], Field(max_length=200)]


ProductEvent = Annotated[
    Annotated[ProductUpsert, Tag("upsert")] | Annotated[ProductDelete, Tag("delete")],
    Discriminator(_product_op),
]
UserEvent = Search | Click | Purchase
Event = ProductUpsert | ProductDelete | Search | Click | Purchase | Impression

_ADAPTERS: dict[EventKind, TypeAdapter[Any]] = {
    "products": TypeAdapter(ProductEvent),
    "searches": TypeAdapter(Search),
    "clicks": TypeAdapter(Click),
    "purchases": TypeAdapter(Purchase),
    "impressions": TypeAdapter(Impression),
}

RejectReason = Literal[
    "empty",
    "too_large",
    "not_utf8",
    "invalid_json",
    "too_deep",
    "not_an_object",
    "unsupported_schema_version",
    "invalid_fields",
    "ts_out_of_range",
    "processing_failed",  # decoded, but its processing kept failing (a poison message)
    "unknown_product",  # a click or purchase whose product was not embedded in time (see streams.parking)
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message could not be accepted, with its original bytes."""

    reason: RejectReason
    detail: str
    raw: bytes


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: object, limit: int) -> int:
    """Nesting depth of decoded JSON, stopping early past ``limit``."""
    stack: list[tuple[object, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def decode(kind: EventKind, raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> Event | Rejection:
    """Decode one message of the given kind; never raises."""
    data = raw or b""
    if not data.strip():
        return Rejection("empty", "empty value or tombstone", data)
    if len(data) > max_bytes:
        return Rejection("too_large", f"{len(data)} bytes exceeds the cap of {max_bytes}", data[:max_bytes])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", str(exc), data)
    try:
        # orjson: several times the standard parser's speed per event.
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            return Rejection("too_deep", "JSON nesting exceeds the parser's limit", data)
        # orjson also refuses escaped lone surrogates, which the contract
        # tolerates (they are dropped from text fields): such a message, and
        # any it refused, is parsed again by the standard library, whose
        # verdict stands.
        try:
            body = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            return Rejection("too_deep", "JSON nesting exceeds the interpreter's limit", data)
        except ValueError as error:
            return Rejection("invalid_json", str(error), data)
    if not isinstance(body, dict):
        return Rejection("not_an_object", f"JSON {type(body).__name__} is not an object", data)
    if _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return Rejection("too_deep", f"JSON nesting exceeds {MAX_JSON_DEPTH}", data)
    version = body.get("schema_version")
    if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
        return Rejection("unsupported_schema_version", f"schema_version {version!r}", data)
    try:
        event: Event = _ADAPTERS[kind].validate_python(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        return Rejection("invalid_fields", problems, data)
    return event


def json_schema(kind: EventKind) -> dict[str, Any]:
    """The published JSON Schema of one topic's events."""
    schema = _ADAPTERS[kind].json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"streamrec.{kind}"
    return schema
