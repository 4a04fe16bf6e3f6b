"""The event contract: decoding never raises, bad input becomes a rejection with a reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streams
from streams.events import (
    EVENT_KINDS,
    MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
    Click,
    Event,
    EventKind,
    Impression,
    ProductDelete,
    ProductUpsert,
    Purchase,
    Rejection,
    RejectReason,
    Search,
    decode,
    json_schema,
    parse_ts,
)

TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAX_TS_MS = 253_402_300_799_999  # the last millisecond of year 9999
DROP = object()  # marks a field to remove from a valid body

VALID: dict[EventKind, dict[str, Any]] = {
    "products": {
        "event_id": "e-1",
        "ts": TS_MS,
        "schema_version": 1,
        "op": "upsert",
        "product_id": "p1",
        "title": "Red running shoes",
        "description": "Light and fast.",
        "category": "running-shoes",
        "brand": "swift",
        "price": 89.5,
        "in_stock": False,
    },
    "searches": {"event_id": "e-1", "ts": TS_MS, "schema_version": 1, "user_id": "u1", "query": "running shoes"},
    "clicks": {
        "event_id": "e-1",
        "ts": TS_MS,
        "schema_version": 1,
        "user_id": "u1",
        "product_id": "p1",
        "request_id": "r1",
        "position": 3,
    },
    "purchases": {
        "event_id": "e-1",
        "ts": TS_MS,
        "schema_version": 1,
        "user_id": "u1",
        "product_id": "p1",
        "quantity": 2,
        "price": 89.5,
    },
    "impressions": {
        "event_id": "r-1",
        "ts": TS_MS,
        "schema_version": 1,
        "user_id": "u1",
        "query": "running shoes",
        "surface": "search",
        "model_version": 3,
        "items": [{"product_id": "p1", "position": 1, "features": {"similarity": 0.5}}],
    },
}
MODELS = {
    "products": ProductUpsert,
    "searches": Search,
    "clicks": Click,
    "purchases": Purchase,
    "impressions": Impression,
}
REQUIRED = {kind: [name for name, f in model.model_fields.items() if f.is_required()] for kind, model in MODELS.items()}
FIELD_NAMES = sorted({name for body in VALID.values() for name in body})


def body(kind: EventKind, **changes: object) -> dict[str, Any]:
    """A valid body of ``kind`` with fields changed (or removed with DROP)."""
    merged = {**VALID[kind], **changes}
    return {key: value for key, value in merged.items() if value is not DROP}


def encoded(kind: EventKind, **changes: object) -> bytes:
    """``body`` as the bytes a producer would send (NaN/Infinity become literals)."""
    return json.dumps(body(kind, **changes)).encode()


def check_outcome(result: object, raw: bytes | None) -> None:
    """A decode result is an accepted event with sane fields, or a well-formed rejection."""
    if isinstance(result, Rejection):
        assert result.reason in get_args(RejectReason)
        assert result.detail
        assert result.raw == (raw or b"")[:MAX_EVENT_BYTES]
        return
    assert isinstance(result, Event)
    assert 0 <= result.ts <= MAX_TS_MS
    for value in result.model_dump().values():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogates reach the sinks


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(kind=st.sampled_from(EVENT_KINDS), raw=st.none() | st.binary(max_size=512))
def test_decode_never_raises_on_arbitrary_bytes(kind: EventKind, raw: bytes | None) -> None:
    """Any bytes (or a tombstone) decode to an event or a rejection, never an exception."""
    check_outcome(decode(kind, raw), raw)


@given(
    kind=st.sampled_from(EVENT_KINDS),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), JSON_VALUES, max_size=12),
)
def test_decode_never_raises_on_arbitrary_json_objects(kind: EventKind, fields: dict[str, Any]) -> None:
    """Arbitrary JSON objects, including NaN and Infinity literals, never make decode raise."""
    raw = json.dumps(fields).encode()
    check_outcome(decode(kind, raw), raw)


@given(kind=st.sampled_from(EVENT_KINDS), name=st.sampled_from(FIELD_NAMES), value=JSON_VALUES)
def test_decode_never_raises_when_one_field_of_a_valid_event_is_arbitrary(
    kind: EventKind, name: str, value: object
) -> None:
    """A valid event with one field replaced by any JSON value is accepted sanely or rejected."""
    raw = encoded(kind, **{name: value})
    check_outcome(decode(kind, raw), raw)


@given(kind=st.sampled_from(EVENT_KINDS), data=st.data())
def test_decode_never_raises_on_truncated_events(kind: EventKind, data: st.DataObject) -> None:
    """Every prefix of a valid event decodes without raising."""
    raw = encoded(kind)
    prefix = raw[: data.draw(st.integers(0, len(raw)))]
    check_outcome(decode(kind, prefix), prefix)


def nested(depth: int) -> bytes:
    """An event object nesting ``depth`` levels, counting the object and the innermost scalar."""
    inner: object = 1
    for _ in range(depth - 2):
        inner = [inner]
    return json.dumps(body("clicks", extra=inner)).encode()


REJECTED: list[Any] = [
    pytest.param("clicks", b"", "empty", id="empty-value"),
    pytest.param("clicks", b" \n\t", "empty", id="whitespace-only"),
    pytest.param("clicks", None, "empty", id="tombstone"),
    pytest.param("clicks", b'{"event_id": "\xff\xfe"}', "not_utf8", id="non-utf8"),
    pytest.param("clicks", encoded("clicks")[:-7], "invalid_json", id="truncated-json"),
    pytest.param("clicks", b"{'event_id': 'e-1'}", "invalid_json", id="single-quoted-json"),
    pytest.param("clicks", b"[1, 2]", "not_an_object", id="json-array"),
    pytest.param("clicks", b'"a string"', "not_an_object", id="json-string"),
    pytest.param("clicks", b"42", "not_an_object", id="json-number"),
    pytest.param("clicks", b"null", "not_an_object", id="json-null"),
    pytest.param("purchases", encoded("purchases", price=float("nan")), "invalid_json", id="nan-literal"),
    pytest.param("clicks", encoded("clicks", ts=float("inf")), "invalid_json", id="infinity-literal"),
    pytest.param("clicks", encoded("clicks", ts=float("-inf")), "invalid_json", id="minus-infinity-literal"),
    pytest.param("clicks", nested(MAX_JSON_DEPTH + 1), "too_deep", id="nested-past-limit"),
    pytest.param("clicks", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "too_deep", id="nested-past-interpreter"),
    pytest.param("clicks", b"[" * 50_000, "too_deep", id="open-brackets-past-interpreter"),
    pytest.param("clicks", encoded("clicks", padding="x" * MAX_EVENT_BYTES), "too_large", id="oversized-valid"),
    pytest.param("clicks", b"\xff" * (MAX_EVENT_BYTES + 1), "too_large", id="oversized-checked-before-utf8"),
    pytest.param("clicks", encoded("clicks", schema_version=2), "unsupported_schema_version", id="version-2"),
    pytest.param("clicks", encoded("clicks", schema_version="1"), "unsupported_schema_version", id="version-str"),
    pytest.param("products", encoded("products", op="merge"), "invalid_fields", id="unknown-product-op"),
    pytest.param("products", encoded("products", op=None), "invalid_fields", id="null-product-op"),
    *[
        pytest.param(kind, encoded(kind, **{name: DROP}), "invalid_fields", id=f"{kind}-missing-{name}")
        for kind, names in REQUIRED.items()
        for name in names
    ],
    *[
        pytest.param(kind, encoded(kind, **{name: None}), "invalid_fields", id=f"{kind}-null-{name}")
        for kind, names in REQUIRED.items()
        for name in names
    ],
    pytest.param("clicks", encoded("clicks", product_id=123), "invalid_fields", id="int-id"),
    pytest.param("clicks", encoded("clicks", product_id="it's"), "invalid_fields", id="quote-in-id"),
    pytest.param("purchases", encoded("purchases", user_id="a\\b"), "invalid_fields", id="backslash-in-id"),
    pytest.param("clicks", encoded("clicks", schema_version=True), "invalid_fields", id="boolean-schema-version"),
    pytest.param("clicks", encoded("clicks", schema_version=1.0), "invalid_fields", id="float-schema-version"),
    pytest.param("clicks", encoded("clicks", user_id=["u1"]), "invalid_fields", id="list-id"),
    pytest.param("clicks", encoded("clicks", position="first"), "invalid_fields", id="text-position"),
    pytest.param("searches", encoded("searches", query=42), "invalid_fields", id="int-query"),
    pytest.param("products", encoded("products", price="cheap"), "invalid_fields", id="text-price"),
    pytest.param("products", encoded("products", in_stock="maybe"), "invalid_fields", id="text-in-stock"),
    pytest.param("products", encoded("products", title={"en": "shoes"}), "invalid_fields", id="object-title"),
    pytest.param("purchases", encoded("purchases", quantity=1.5), "invalid_fields", id="fractional-quantity"),
    pytest.param("clicks", encoded("clicks", event_id=""), "invalid_fields", id="empty-event-id"),
    pytest.param("clicks", encoded("clicks", event_id="e\x001"), "invalid_fields", id="control-char-in-id"),
    pytest.param("clicks", encoded("clicks", user_id="u" * 129), "invalid_fields", id="huge-id"),
    pytest.param("searches", encoded("searches", query=""), "invalid_fields", id="empty-query"),
    pytest.param("searches", encoded("searches", query="   "), "invalid_fields", id="blank-query"),
    pytest.param("searches", encoded("searches", query="\x00\x1f\x7f"), "invalid_fields", id="control-only-query"),
    pytest.param("searches", encoded("searches", query="q" * 513), "invalid_fields", id="huge-query"),
    pytest.param("products", encoded("products", title=""), "invalid_fields", id="empty-title"),
    pytest.param("products", encoded("products", price=-0.01), "invalid_fields", id="negative-price"),
    pytest.param("products", encoded("products", price="NaN"), "invalid_fields", id="nan-string-price"),
    pytest.param("products", encoded("products", price="Infinity"), "invalid_fields", id="infinity-string-price"),
    pytest.param("purchases", encoded("purchases", price=-5), "invalid_fields", id="negative-purchase-price"),
    pytest.param("purchases", encoded("purchases", quantity=0), "invalid_fields", id="quantity-0"),
    pytest.param("purchases", encoded("purchases", quantity=-1), "invalid_fields", id="negative-quantity"),
    pytest.param("purchases", encoded("purchases", quantity=10_001), "invalid_fields", id="huge-quantity"),
    pytest.param("clicks", encoded("clicks", position=0), "invalid_fields", id="position-0"),
    pytest.param("clicks", encoded("clicks", ts=-1), "invalid_fields", id="negative-ts"),
    pytest.param("clicks", encoded("clicks", ts="1969-12-31T23:59:59Z"), "invalid_fields", id="iso-before-1970"),
    pytest.param("clicks", encoded("clicks", ts=True), "invalid_fields", id="boolean-ts"),
    pytest.param("clicks", encoded("clicks", ts="yesterday"), "invalid_fields", id="text-ts"),
    pytest.param("clicks", encoded("clicks", ts=1e300), "invalid_fields", id="ts-past-year-9999"),
    pytest.param("clicks", encoded("clicks", ts=[TS_MS]), "invalid_fields", id="list-ts"),
]


@pytest.mark.parametrize(("kind", "raw", "reason"), REJECTED)
def test_bad_input_is_rejected_with_its_reason(kind: EventKind, raw: bytes | None, reason: str) -> None:
    """Each bad input from RELIABILITY.md is rejected with the expected machine-readable reason."""
    result = decode(kind, raw)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result.detail
    check_outcome(result, raw)


def test_size_cap_is_checked_before_parsing() -> None:
    """The byte cap alone decides: the same oversized event is accepted under a larger cap."""
    raw = encoded("clicks", padding="x" * MAX_EVENT_BYTES)
    capped = decode("clicks", raw)
    assert isinstance(capped, Rejection)
    assert capped.reason == "too_large"
    assert capped.raw == raw[:MAX_EVENT_BYTES]
    assert isinstance(decode("clicks", raw, max_bytes=len(raw)), Click)


def test_depth_limit_is_inclusive() -> None:
    """JSON nested exactly MAX_JSON_DEPTH deep is accepted; one level more is not."""
    assert isinstance(decode("clicks", nested(MAX_JSON_DEPTH)), Click)
    assert isinstance(decode("clicks", nested(MAX_JSON_DEPTH + 1)), Rejection)


ACCEPTED: list[Any] = [
    pytest.param("clicks", {"extra": {"nested": [1, 2]}, "v2_field": "x"}, {"product_id": "p1"}, id="unknown-fields"),
    pytest.param("searches", {"query": "red\x00\x1fshoes\tnow\n"}, {"query": "red shoes now"}, id="control-chars"),
    pytest.param("searches", {"query": "shoes\x7f\x85sale"}, {"query": "shoes sale"}, id="c1-control-chars"),
    pytest.param("searches", {"query": "shoes\ud800"}, {"query": "shoes"}, id="lone-surrogate"),
    pytest.param("searches", {"query": "  shoes  "}, {"query": "shoes"}, id="query-trimmed"),
    pytest.param("searches", {"query": "q" * 512}, {"query": "q" * 512}, id="query-at-limit"),
    pytest.param("clicks", {"ts": TS_MS // 1000}, {"ts": TS_MS}, id="epoch-seconds"),
    pytest.param("clicks", {"ts": TS_MS}, {"ts": TS_MS}, id="epoch-ms"),
    pytest.param("clicks", {"ts": TS_MS / 1000 + 0.25}, {"ts": TS_MS + 250}, id="fractional-seconds"),
    pytest.param("clicks", {"ts": "2026-01-01T00:00:00Z"}, {"ts": TS_MS}, id="iso-z"),
    pytest.param("clicks", {"ts": "2026-01-01T01:00:00+01:00"}, {"ts": TS_MS}, id="iso-offset"),
    pytest.param("clicks", {"ts": "2026-01-01T00:00:00"}, {"ts": TS_MS}, id="naive-iso-is-utc"),
    pytest.param("clicks", {"ts": 0}, {"ts": 0}, id="epoch-0"),
    pytest.param("clicks", {"request_id": DROP, "position": DROP}, {"request_id": None, "position": None}, id="opt"),
    pytest.param("products", {"op": DROP}, {"op": "upsert"}, id="op-defaults-to-upsert"),
    pytest.param("products", {"price": 0}, {"price": 0.0}, id="free-product"),
    pytest.param(
        "products",
        {"description": DROP, "brand": DROP, "in_stock": DROP},
        {"description": "", "brand": "", "in_stock": True},
        id="product-defaults",
    ),
    pytest.param("purchases", {"quantity": DROP, "price": DROP}, {"quantity": 1, "price": None}, id="purchase-opt"),
]


@pytest.mark.parametrize(("kind", "changes", "expected"), ACCEPTED)
def test_tolerated_input_is_accepted_and_normalised(
    kind: EventKind, changes: dict[str, object], expected: dict[str, object]
) -> None:
    """Inputs the contract tolerates decode to an event with normalised fields."""
    result = decode(kind, encoded(kind, **changes))
    assert isinstance(result, MODELS[kind]), result
    assert {name: getattr(result, name) for name in expected} == expected
    assert not hasattr(result, "extra")


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_valid_event_decodes_to_its_class_with_its_fields(kind: EventKind) -> None:
    """A valid event of each kind decodes to the right class carrying exactly the sent fields."""
    result = decode(kind, encoded(kind))
    assert type(result) is MODELS[kind]
    assert result.model_dump() == VALID[kind]


def test_product_delete_decodes_to_product_delete() -> None:
    """A product event with op 'delete' needs only the id and decodes to ProductDelete."""
    raw = json.dumps({"event_id": "e-9", "ts": TS_MS, "schema_version": 1, "op": "delete", "product_id": "p1"})
    result = decode("products", raw.encode())
    assert result == ProductDelete(event_id="e-9", ts=TS_MS, schema_version=1, op="delete", product_id="p1")


def test_product_text_joins_title_category_and_description() -> None:
    """The embedded text of a product reads title, category words and description."""
    product = decode("products", encoded("products"))
    assert isinstance(product, ProductUpsert)
    assert product.text() == "Red running shoes. running shoes. Light and fast."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TS_MS // 1000, TS_MS),
        (TS_MS, TS_MS),
        ("2026-01-01T00:00:00.5Z", TS_MS + 500),
        (99_999_999_999, 99_999_999_999_000),
    ],
)
def test_parse_ts_reads_seconds_milliseconds_and_iso(value: object, expected: int) -> None:
    """Epoch seconds (below 1e11), milliseconds and ISO strings all become epoch ms."""
    assert parse_ts(value) == expected


def object_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas of a topic: the schema itself, or each ``oneOf`` branch."""
    if "oneOf" not in schema:
        return [schema]
    return [schema["$defs"][branch["$ref"].rsplit("/", 1)[1]] for branch in schema["oneOf"]]


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_json_schema_describes_the_event_objects(kind: EventKind) -> None:
    """Each topic's JSON Schema names its dialect and title and lists typed, required fields."""
    schema = json_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == f"streamrec.{kind}"
    branches = object_schemas(schema)
    assert len(branches) == (2 if kind == "products" else 1)
    for branch in branches:
        assert branch["type"] == "object"
        assert {"event_id", "ts", "schema_version"} <= set(branch["properties"])
        assert {"event_id", "ts", "schema_version"} <= set(branch["required"])
        assert set(branch["required"]) <= set(branch["properties"])
        assert branch["properties"]["schema_version"]["const"] == 1
    json.dumps(schema)  # serialisable as published


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_published_schema_files_match_json_schema(kind: EventKind) -> None:
    """streams/schemas/<kind>.schema.json is exactly what `streamrec schemas` writes from json_schema()."""
    path = Path(streams.__file__).parent / "schemas" / f"{kind}.schema.json"
    assert path.read_text() == json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"
