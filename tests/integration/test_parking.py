"""Clicks on products not embedded yet wait for the product; those whose product never comes are dead-lettered."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

import pytest

from streamrec.launcher import AllInOne, Publisher, click_event, wait_for
from streams.dlq import read_dead_letters
from streams.settings import StreamSettings

pytestmark = pytest.mark.integration


def _served(system: AllInOne, user: str) -> dict[str, Any]:
    status, body = system.api.get(f"/v1/users/{urllib.parse.quote(user)}")
    return dict(body["features"]) if status == 200 else {}


def test_a_click_before_its_product_is_applied_with_the_product_once_it_is_embedded(
    system: AllInOne, publisher: Publisher, products: list[dict[str, Any]]
) -> None:
    """The click waits (parked, counted); the product arrives; the profile then holds the click and its category."""
    run = uuid.uuid4().hex[:8]
    user, product_id = f"early-{run}", f"late-product-{run}"
    before = {
        "parked": system.api.counter("streamrec_parked_events_total", outcome="parked"),
        "applied": system.api.counter("streamrec_parked_events_total", outcome="applied"),
        "dead": system.api.counter("streamrec_dead_letters_total", reason="unknown_product"),
    }
    publisher.send_all([("click", click_event(user, product_id))])
    wait_for(
        lambda: system.api.counter("streamrec_parked_events_total", outcome="parked") > before["parked"],
        timeout_s=30,
        interval_s=0.2,
    )
    assert system.api.profile_events(user) == 0, "the click was applied before its product existed"

    product = {**products[0], "event_id": uuid.uuid4().hex, "product_id": product_id, "category": "late-arrivals"}
    publisher.send_all([("product", product)])
    wait_for(lambda: system.api.profile_events(user) == 1, timeout_s=30, interval_s=0.2)
    features = _served(system, user)
    assert "late-arrivals" in features["categories"], features
    assert product_id in features["recent_items"]
    # The release is counted just after the profile it changed is published: wait for it, bounded.
    wait_for(
        lambda: system.api.counter("streamrec_parked_events_total", outcome="applied") >= before["applied"] + 1,
        timeout_s=10,
        interval_s=0.1,
    )
    assert system.api.counter("streamrec_parked_events_total", outcome="applied") == before["applied"] + 1
    assert system.api.counter("streamrec_dead_letters_total", reason="unknown_product") == before["dead"]


def test_a_click_whose_product_never_comes_is_dead_lettered_after_the_parking_time(
    system: AllInOne,
    system_env: dict[str, str],
    publisher: Publisher,
    stream_settings: StreamSettings,
    products: list[dict[str, Any]],
) -> None:
    """After ``park_max_s`` the click is dead-lettered (``unknown_product``); the shopper's next click applies."""
    run = uuid.uuid4().hex[:8]
    user = f"orphan-{run}"
    orphan = click_event(user, f"never-{run}")
    before = {
        "expired": system.api.counter("streamrec_parked_events_total", outcome="expired"),
        "dead": system.api.counter("streamrec_dead_letters_total", reason="unknown_product"),
    }
    publisher.send_all([("click", orphan), ("click", click_event(user, products[1]["product_id"]))])
    wait_for(lambda: system.api.profile_events(user) == 1, timeout_s=30, interval_s=0.2)
    park_max_s = float(system_env["STREAMREC_PARK_MAX_S"])
    wait_for(
        lambda: system.api.counter("streamrec_dead_letters_total", reason="unknown_product") > before["dead"],
        timeout_s=park_max_s + 30,
        interval_s=0.5,
    )
    assert system.api.counter("streamrec_parked_events_total", outcome="expired") == before["expired"] + 1
    assert system.api.profile_events(user) == 1
    letters = [
        letter
        for letter in read_dead_letters(stream_settings, reasons={"unknown_product"})
        if orphan["event_id"].encode() in letter.value
    ]
    assert len(letters) == 1
    assert letters[0].source_topic == stream_settings.topic_clicks
    assert f"never-{run}" in letters[0].detail
