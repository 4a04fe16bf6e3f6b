"""The ranker learns from live impressions and clicks, and resumes from its snapshot after a restart."""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from streamrec.launcher import AllInOne, Publisher, click_event, wait_for

pytestmark = pytest.mark.integration

QUERY = "whole bean coffee"
REQUESTS_PER_ROUND = 10
MAX_ROUNDS = 15
RECENT_ROUNDS = 6  # about 600 examples: the whole recent-AUC window
ATTRIBUTION_WINDOW_S = 3  # STREAMREC_ATTRIBUTION_WINDOW_S of the test system


def _search(system: AllInOne, user_id: str | None) -> dict[str, Any]:
    return system.api.json("/v1/search", q=QUERY, user_id=user_id, k=10, explain="true")


def _mean_rank(body: dict[str, Any], brand: str) -> float:
    ranks = [rank for rank, item in enumerate(body["items"], start=1) if item["brand"] == brand]
    return statistics.fmean(ranks) if ranks else 11.0


def _round(system: AllInOne, publisher: Publisher, brand: str) -> tuple[int, int]:
    """New shoppers search and click every item of ``brand``; returns (requests, clicks)."""
    clicks = 0
    for _ in range(REQUESTS_PER_ROUND):
        user = f"learner-{uuid.uuid4().hex[:10]}"
        body = _search(system, user)
        for position, item in enumerate(body["items"], start=1):
            if item["brand"] == brand:
                clicks += 1
                publisher.send("click", click_event(user, item["product_id"], body["request_id"], position))
    publisher.flush()
    return REQUESTS_PER_ROUND, clicks


def test_clicks_on_one_brand_move_it_up_for_new_shoppers(
    system: AllInOne, publisher: Publisher, products: list[dict[str, Any]]
) -> None:
    """Clicking only one brand's items at low positions teaches the model to rank that brand higher for new users."""
    first = _search(system, None)
    counts = Counter(item["brand"] for item in first["items"])
    # The lowest-placed brand, preferring one with several items in the list.
    candidates = [b for b, n in counts.items() if n >= 2] or list(counts)
    brand = max(candidates, key=lambda b: _mean_rank(first, b))
    before = _mean_rank(first, brand)
    assert before >= 3, f"{brand} should start low in the list: {counts}"
    goal = max(1.5, before - 2)  # two places up, or into the top two

    clicks, requests, after = 0, 0, before
    for _ in range(MAX_ROUNDS):
        sent = _round(system, publisher, brand)
        requests, clicks = requests + sent[0], clicks + sent[1]
        time.sleep(1.5)  # a snapshot interval, so the API has the newest model
        probe = _search(system, None)
        after = _mean_rank(probe, brand)
        if probe["model_version"] > 0 and after <= goal:
            break
    print(f"{brand}: mean rank {before:.1f} -> {after:.1f} after {requests} requests and {clicks} clicks")
    assert probe["model_version"] > 0, "the API ranks with a learned model"
    assert after <= goal, f"{brand}: mean rank {before:.1f} -> {after:.1f} after {clicks} clicks"
    # Once the preference is learned, the model predicts it: the progressive
    # AUC over the last 500 examples, all from rounds after the rank moved,
    # is above chance. (The cumulative AUC also carries the learning phase
    # and whatever the session's other tests taught the model.)
    for _ in range(RECENT_ROUNDS):
        _round(system, publisher, brand)
        time.sleep(0.5)
    time.sleep(ATTRIBUTION_WINDOW_S + 2)  # unclicked items become negatives, and a snapshot carries the metric
    auc = system.api.metric("streamrec_model_recent_auc")
    print(
        f"progressive AUC: last 500 examples {auc}, all {system.api.metric('streamrec_model_progressive_auc')}; "
        f"log loss {system.api.metric('streamrec_model_progressive_logloss')}"
    )
    assert auc is not None
    assert auc > 0.5
    top = probe["items"][0]
    assert set(top["contributions"]) >= {"similarity", "ctr", "intercept"}
    assert top["score"] == pytest.approx(sum(top["contributions"].values()), abs=1e-4)


def test_restart_resumes_from_the_snapshot_without_relearning(system: AllInOne) -> None:
    """After a restart the API serves the same model with the same contributions, and nothing is learned twice."""

    def settled() -> dict[str, Any] | None:
        # Let open impressions close and the last examples reach a snapshot.
        first = _search(system, None)
        time.sleep(4.5)
        second = _search(system, None)
        return second if second["model_version"] == first["model_version"] > 0 else None

    before = wait_for(settled, timeout_s=60, interval_s=0)
    system.stop()
    system.start()
    after = wait_for(lambda: (b := _search(system, None))["model_version"] >= before["model_version"] and b, 60)
    assert after["model_version"] == before["model_version"]
    assert [i["product_id"] for i in after["items"]] == [i["product_id"] for i in before["items"]]
    for old, new in zip(before["items"], after["items"], strict=True):
        # Freshness is the one feature that moves with the wall clock (all
        # sample products are the same age, so the scaler magnifies seconds);
        # every other contribution must be exactly what it was.
        for name, value in old["contributions"].items():
            if name != "freshness":
                assert new["contributions"][name] == pytest.approx(value, abs=1e-6), name
    time.sleep(3)  # several snapshot intervals: a learner that relearned would publish a new version
    assert _search(system, None)["model_version"] == before["model_version"]
