"""A message that decodes but fails in processing every time is dead-lettered; the stream goes on."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from streamrec.launcher import AllInOne, Publisher, click_event, wait_for
from streams.dlq import read_dead_letters
from streams.settings import StreamSettings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_poison_click_is_dead_lettered_after_retries_and_its_neighbours_apply(
    system: AllInOne,
    publisher: Publisher,
    stream_settings: StreamSettings,
    products: list[dict[str, Any]],
    poison_prefix: str,
) -> None:
    """Clicks before and after the poison apply once each; the poison lands in the DLQ with its cause."""
    run = uuid.uuid4().hex[:8]
    user = f"poisoned-{run}"
    in_stock = [p["product_id"] for p in products if p["in_stock"]]
    before = {
        "dead": system.api.counter("streamrec_dead_letters_total", reason="processing_failed"),
        "failed": system.api.counter("streamrec_failed_batches_total", agent="behavior"),
        "processed": system.api.counter("streamrec_events_total", agent="behavior", outcome="processed"),
    }
    poison = {**click_event(user, in_stock[1]), "event_id": f"{poison_prefix}{run}"}
    sent = [click_event(user, in_stock[0]), poison, click_event(user, in_stock[2])]
    publisher.send_all(("click", event) for event in sent)

    wait_for(lambda: system.api.profile_events(user) >= 2, timeout_s=30, interval_s=0.2)
    wait_for(
        lambda: system.api.counter("streamrec_dead_letters_total", reason="processing_failed") > before["dead"],
        timeout_s=30,
        interval_s=0.2,
    )
    assert system.api.profile_events(user) == 2
    assert system.api.counter("streamrec_failed_batches_total", agent="behavior") >= before["failed"] + 1
    assert (
        system.api.counter("streamrec_events_total", agent="behavior", outcome="processed") >= before["processed"] + 2
    )

    letters = [
        letter
        for letter in read_dead_letters(stream_settings, reasons={"processing_failed"})
        if f"{poison_prefix}{run}".encode() in letter.value
    ]
    assert len(letters) == 1
    assert letters[0].source_topic == stream_settings.topic_clicks
    assert "InjectedFault" in letters[0].detail

    # No crash loop: the same process keeps serving and taking events.
    follow_up = f"after-{run}"
    publisher.send_all([("click", click_event(follow_up, in_stock[3]))])
    wait_for(lambda: system.api.profile_events(follow_up) == 1, timeout_s=30, interval_s=0.2)


def test_poison_product_is_dead_lettered_and_the_rest_of_its_batch_is_indexed(
    system: AllInOne,
    publisher: Publisher,
    stream_settings: StreamSettings,
    products: list[dict[str, Any]],
    poison_prefix: str,
) -> None:
    """A product that fails every time is dead-lettered; products around it become searchable."""
    run = uuid.uuid4().hex[:8]
    template = products[0]
    good = [{**template, "product_id": f"good-{run}-{n}", "event_id": uuid.uuid4().hex} for n in range(2)]
    bad = {**template, "product_id": f"bad-{run}", "event_id": f"{poison_prefix}{run}"}
    publisher.send_all(("product", event) for event in [good[0], bad, good[1]])

    def indexed(product_id: str) -> bool:
        status, _ = system.api.get(f"/v1/similar/{product_id}")
        return status == 200

    wait_for(lambda: all(indexed(p["product_id"]) for p in good), timeout_s=60, interval_s=0.3)
    letters = wait_for(
        lambda: [
            letter
            for letter in read_dead_letters(stream_settings, reasons={"processing_failed"})
            if letter.key == bad["product_id"].encode()
        ],
        timeout_s=30,
        interval_s=0.5,
    )
    assert len(letters) == 1
    assert letters[0].source_topic == stream_settings.topic_products
    assert not indexed(bad["product_id"])
