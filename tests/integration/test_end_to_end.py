"""Events in, personalized results out: the real broker, Milvus Lite and the real model."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer

from streamrec.launcher import AllInOne, Publisher, click_event, wait_for
from streamrec.sample_data import CATEGORIES, shopper_events
from streams.settings import StreamSettings

pytestmark = pytest.mark.integration

FOCUS = "coffee"


def _categories(body: dict[str, Any]) -> list[str]:
    return [item["category"] for item in body["items"]]


def test_catalog_covers_several_categories(products: list[dict[str, Any]]) -> None:
    """The published catalog spans every sample category, so dominance below means something."""
    assert {p["category"] for p in products} == set(CATEGORIES)


def test_clicks_and_purchase_personalize_recommendations_within_5s(
    system: AllInOne, publisher: Publisher, products: list[dict[str, Any]]
) -> None:
    """After one shopper's clicks and purchase, their recommendations are dominated by that category within 5 s."""
    shopper, other = f"shopper-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    before = system.api.json("/v1/recommendations", user_id=shopper, k=10)
    assert not before["personalized"]
    assert _categories(before).count(FOCUS) <= 2

    events = shopper_events(products, shopper, FOCUS, n_clicks=6)
    *browsing, (_, purchase) = events
    sent = time.monotonic()
    publisher.send_all(browsing)  # a search and six clicks

    def dominated() -> dict[str, Any] | None:
        body = system.api.json("/v1/recommendations", user_id=shopper, k=10)
        return body if body["personalized"] and _categories(body).count(FOCUS) >= 7 else None

    after = wait_for(dominated, timeout_s=5.0, interval_s=0.02)
    print(f"click events -> recommendations dominated by {FOCUS}: {(time.monotonic() - sent) * 1000:.0f} ms")
    scores = [item["score"] for item in after["items"]]
    assert scores == sorted(scores, reverse=True)

    sent = time.monotonic()
    publisher.send_all([("purchase", purchase)])

    def without_purchase() -> dict[str, Any] | None:
        body = system.api.json("/v1/recommendations", user_id=shopper, k=10)
        return body if purchase["product_id"] not in {i["product_id"] for i in body["items"]} else None

    assert _categories(wait_for(without_purchase, timeout_s=5.0, interval_s=0.02)).count(FOCUS) >= 7
    print(f"purchase event -> purchased item gone from recommendations: {(time.monotonic() - sent) * 1000:.0f} ms")

    # Another shopper who browsed laptops is not pulled towards coffee.
    publisher.send_all(shopper_events(products, other, "laptops", n_clicks=4, purchase=False))
    wait_for(lambda: system.api.json("/v1/recommendations", user_id=other, k=10)["personalized"], timeout_s=5.0)
    other_body = system.api.json("/v1/recommendations", user_id=other, k=10)
    assert _categories(other_body).count(FOCUS) <= 2
    assert _categories(other_body).count("laptops") >= 5


def test_semantic_search_finds_shoes_without_shared_words(system: AllInOne, products: list[dict[str, Any]]) -> None:
    """A query ranks running shoes first although their titles share no word with it."""
    query = "footwear for jogging"
    body = system.api.json("/v1/search", q=query, k=5, explain="true")
    assert _categories(body) == ["running-shoes"] * 5
    query_words = set(query.split())
    assert any(not query_words & set(re.findall(r"[a-z]+", item["title"].lower())) for item in body["items"])
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(item["contributions"]["similarity"] > 0 for item in body["items"])


def test_malformed_event_is_dead_lettered_and_stream_goes_on(
    system: AllInOne, publisher: Publisher, stream_settings: StreamSettings, products: list[dict[str, Any]]
) -> None:
    """A malformed click lands in the dead-letter topic with its reason and bytes; the next click still applies."""
    user = f"after-poison-{uuid.uuid4().hex[:8]}"
    poison = b'{"event_id": "poison-' + uuid.uuid4().hex.encode() + b'", "user_id": '
    publisher.send_raw("click", user.encode(), poison)
    clicked = next(p for p in products if p["category"] == "yoga" and p["in_stock"])
    publisher.send_all([("click", click_event(user, clicked["product_id"]))])
    body = wait_for(
        lambda: (b := system.api.json("/v1/recommendations", user_id=user, k=5))["personalized"] and b, timeout_s=10
    )
    assert "yoga" in _categories(body)

    consumer = KafkaConsumer(
        stream_settings.topic_dlq,
        bootstrap_servers=stream_settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=None,
    )
    try:
        letters = [m for m in consumer if m.value == poison]
    finally:
        consumer.close()
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["reason"] == "invalid_json"
    assert headers["source_topic"] == stream_settings.topic_clicks
    with urllib.request.urlopen(system.api.base_url + "/metrics") as response:
        text = response.read().decode()
    assert re.search(r'streamrec_dead_letters_total\{reason="invalid_json"\} [1-9]', text)


def test_api_rejects_bad_parameters_on_the_live_system(system: AllInOne) -> None:
    """The running API answers bad parameters with a 400 naming the parameter."""
    status, body = system.api.get("/v1/search", q="", k=5)
    assert status == 400
    assert body["parameter"] == "q"
    status, body = system.api.get("/v1/similar/does-not-exist")
    assert status == 404
    assert body["error"] == "not_found"


def test_consumer_lag_is_exported_and_drains(system: AllInOne, products: list[dict[str, Any]]) -> None:
    """Lag per owned partition is exported for the source topics and falls to zero once events are committed."""

    def lags() -> dict[tuple[str, str], float] | None:
        with urllib.request.urlopen(system.api.base_url + "/metrics") as response:
            text = response.read().decode()
        pattern = r'^streamrec_consumer_lag_messages\{partition="(\d+)",topic="([^"]+)"\} (\S+)$'
        found = {(topic, partition): float(value) for partition, topic, value in re.findall(pattern, text, re.M)}
        topics = {topic for topic, _ in found}
        ready = {"streamrec.products", "streamrec.clicks"} <= topics and not any(found.values())
        return found if ready else None

    found = wait_for(lags, timeout_s=30, interval_s=0.5)
    assert {partition for topic, partition in found if topic == "streamrec.clicks"} == {"0", "1", "2", "3"}
