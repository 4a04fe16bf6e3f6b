"""The prequential replay: hand-computed metrics, no peeking, exclusions, and ``evaluate`` end to end."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from online_learning.settings import LearningSettings
from ranker.settings import RankerSettings
from streamrec.evaluation.baselines import Baseline, CoOccurrence, Popularity
from streamrec.evaluation.command import EvaluateOptions, baselines, evaluate, make_encoder
from streamrec.evaluation.data import CatalogItem, Dataset, Interaction, InteractionKind, movielens_100k
from streamrec.evaluation.metrics import Request
from streamrec.evaluation.replay import ReplayResult, StreamrecReplay, replay

STREAMREC = ("streamrec", "streamrec-blend", "content")
ITEMS = ("a", "b", "c", "d")
TITLES = {"a": "red running shoes", "b": "leather belt", "c": "canvas hiking backpack", "d": "wool winter hat"}
# (shopper, item, kind), one every 10 ms; the requests come before events 6 to 9.
EVENTS: tuple[tuple[str, str, InteractionKind], ...] = (
    ("u1", "a", "click"),
    ("u2", "a", "click"),
    ("u2", "c", "click"),
    ("u2", "d", "click"),
    ("u1", "b", "click"),
    ("u3", "c", "click"),
    ("u3", "d", "purchase"),
    ("u1", "c", "purchase"),
    ("u2", "d", "purchase"),  # a re-purchase: d is excluded, so no method can find it
    ("u3", "b", "purchase"),
)
# (method, request index) -> (ranked list, rank of the target). Ties go to catalog order.
RANKINGS = {
    # Popularity counts interactions. Before 6: a=2 b=1 c=2 d=1, u3 touched c -> (a, b, d), d third.
    ("popularity", 6): (("a", "b", "d"), 3),
    # Before 7: a=2 b=1 c=2 d=2, u1 touched a, b -> (c, d), c first.
    ("popularity", 7): (("c", "d"), 1),
    # u2 touched a, c, d: only b is left, and the target d is not in it.
    ("popularity", 8): (("b",), None),
    # Before 9: a=2 b=1 c=3 d=3, u3 touched c, d -> (a, b), b second.
    ("popularity", 9): (("a", "b"), 2),
    # Co-occurrence counts shoppers with both. Before 6 u3 has [c]; c was with a (u2) and d (u2), not b:
    # a=1, d=1, b=0, ties broken by shopper counts a=2 > d=1 -> (a, d, b), d second.
    ("cooccurrence", 6): (("a", "d", "b"), 2),
    # u1 has [a, b]: a-c=1, a-d=1 (u2), c and d with b = 0 -> c=1, d=1 tie, counts c=2 = d=2 -> (c, d).
    ("cooccurrence", 7): (("c", "d"), 1),
    ("cooccurrence", 8): (("b",), None),
    # u3 has [c, d]: a = c-a 2 (u1, u2) + d-a 1 (u2) = 3, b = c-b 1 (u1) + d-b 0 = 1 -> (a, b).
    ("cooccurrence", 9): (("a", "b"), 2),
}
# method -> hit_rate@10, ndcg@10 (1/log2(rank + 1)), mrr over the four requests.
EXPECTED = {
    # ranks 3, 1, -, 2
    "popularity": (3 / 4, (1 / math.log2(4) + 1 + 0 + 1 / math.log2(3)) / 4, (1 / 3 + 1 + 0 + 1 / 2) / 4),
    # ranks 2, 1, -, 2
    "cooccurrence": (3 / 4, (1 / math.log2(3) + 1 + 0 + 1 / math.log2(3)) / 4, (1 / 2 + 1 + 0 + 1 / 2) / 4),
}

Recorded = list[tuple[str, Request]]


def hand_built(events: Sequence[tuple[str, str, InteractionKind]] = EVENTS) -> Dataset:
    """The events at 10, 20, 30... ms over the four-item catalog."""
    interactions = [Interaction(user, item, 10 * (n + 1), kind) for n, (user, item, kind) in enumerate(events)]
    catalog = {item: CatalogItem(item, TITLES[item], "misc", 10.0) for item in ITEMS}
    return Dataset("hand-built", interactions, catalog)


@pytest.fixture(scope="module")
def recorder() -> Recorded:
    """Every (method, request) the replay counts, in order; cleared by each ``run``."""
    recorded: Recorded = []
    return recorded


def run(
    dataset: Dataset, recorded: Recorded, methods: Sequence[str], chosen: Sequence[Baseline]
) -> tuple[ReplayResult, Recorded]:
    """Replay ``dataset`` through a fresh streamrec with the hashing encoder; the result and its requests."""
    recorded.clear()
    encoder = make_encoder("hashing")
    try:
        streamrec = StreamrecReplay(
            encoder, ranker=RankerSettings(), learning=LearningSettings(), profile_half_life_ms=7 * 86_400_000
        )
        result = asyncio.run(
            replay(dataset, streamrec, chosen, methods=methods, on_request=lambda m, r: recorded.append((m, r)))
        )
    finally:
        encoder.close()
    return result, list(recorded)


def everything(dataset: Dataset, recorded: Recorded) -> Recorded:
    """The requests of every streamrec method and every baseline over ``dataset``."""
    return run(dataset, recorded, STREAMREC, baselines(dataset, half_life_ms=86_400_000))[1]


@pytest.fixture(scope="module")
def movielens(recorder: Recorded) -> tuple[Dataset, Recorded]:
    """The first 150 MovieLens ratings and every method's requests over them."""
    dataset = movielens_100k(limit=150)
    return dataset, everything(dataset, recorder)


def test_hand_built_stream_ranks_and_scores_as_computed_by_hand(recorder: Recorded) -> None:
    """Popularity and raw co-occurrence return exactly the hand-worked lists, and the metrics follow from them."""
    result, requests = run(hand_built(), recorder, (), [Popularity(ITEMS), CoOccurrence(ITEMS, cosine=False)])
    assert {(method, r.index): (r.ranked, r.rank) for method, r in requests} == RANKINGS
    assert {(r.target, r.total, r.cold) for _, r in requests} == {("d", 10, True), ("c", 10, True), ("b", 10, True)}
    assert result.methods == ("popularity", "cooccurrence")
    for method, (hit_rate, ndcg, mrr) in EXPECTED.items():
        overall = result.evaluation.overall(method)
        assert overall["requests"] == 4
        assert overall["hit_rate@10"] == overall["recall@20"] == hit_rate
        assert overall["ndcg@10"] == pytest.approx(ndcg)
        assert overall["mrr"] == pytest.approx(mrr)
        assert overall["coverage"] == 1.0  # a, b, c and d were each shown at least once
        assert result.evaluation.cold(method)["requests"] == 4  # nobody had 5 prior events


def test_no_method_sees_the_purchase_it_is_asked_about(recorder: Recorded) -> None:
    """Before the first purchase of a never-seen item, no method's list shows a trace of that purchase."""
    requests = everything(hand_built([("v", "b", "click"), ("u", "a", "purchase")]), recorder)
    # Had the purchase of a been applied first, the baselines would rank a first (a tie with b goes to
    # catalog order) and streamrec would drop a as already bought; content, with no popular source,
    # gives a new shopper the catalog's range.
    expected = {method: ("b", "a", "c", "d") for method, _ in requests}
    expected["content"] = ("a", "b", "c", "d")
    assert {method: request.ranked for method, request in requests} == expected
    assert len(requests) == len(STREAMREC) + 4


def test_requests_do_not_depend_on_later_events(recorder: Recorded, movielens: tuple[Dataset, Recorded]) -> None:
    """Cutting the stream right after a purchase leaves every request up to it unchanged (but for latency)."""
    dataset, full = movielens
    cut = next(i for i, e in enumerate(dataset.interactions) if i >= 75 and e.kind == "purchase")
    truncated = everything(Dataset(dataset.name, dataset.interactions[: cut + 1], dataset.catalog), recorder)

    def answers(requests: Recorded) -> list[tuple[str, int, str, tuple[str, ...], bool]]:
        # total differs by construction: it is the stream length.
        return [(m, r.index, r.target, r.ranked, r.cold) for m, r in requests if r.index <= cut]

    assert answers(truncated) == answers(full)
    assert {m for m, r in truncated if r.index == cut} == set(STREAMREC) | {b.name for b in baselines(dataset, 1.0)}


@pytest.mark.parametrize("source", ["hand-built", "movielens"])
def test_no_list_holds_an_item_the_shopper_touched(
    source: str, recorder: Recorded, movielens: tuple[Dataset, Recorded]
) -> None:
    """No method ever recommends an item the shopper clicked or bought before the request."""
    dataset, requests = movielens if source == "movielens" else (hand_built(), everything(hand_built(), recorder))
    assert requests
    for method, request in requests:
        shopper = dataset.interactions[request.index].user_id
        touched = {e.item_id for e in dataset.interactions[: request.index] if e.user_id == shopper}
        assert not touched & set(request.ranked), (method, request.index)


def quality(results: dict[str, Any]) -> dict[str, Any]:
    """Each method's overall and per-decile numbers without the latencies, which vary run to run."""
    return {
        method: [
            {key: value for key, value in summary.items() if not key.startswith("latency")}
            for summary in [numbers["overall"], numbers["cold"], *numbers["by_decile"]]
        ]
        for method, numbers in results["methods"].items()
    }


def evaluated(options: EvaluateOptions) -> tuple[str, dict[str, Any]]:
    """Run ``evaluate``: its terminal output and results.json, after checking all three files are there."""
    out = io.StringIO()
    evaluate(options, out=out, command="streamrec evaluate (test)")
    for name in ("report.md", "results.json", "ndcg_over_stream.png"):
        assert (options.out / name).stat().st_size > 0, name
    results: dict[str, Any] = json.loads((options.out / "results.json").read_text(encoding="utf-8"))
    return out.getvalue(), results


def test_evaluate_on_movielens_writes_the_report_and_repeats_exactly(tmp_path: Path) -> None:
    """Two evaluate runs on a MovieLens slice write all three files, name every method and agree on every metric."""
    runs = [
        evaluated(EvaluateOptions(limit=300, encoder="hashing", out=tmp_path / name, methods=("streamrec", "content")))
        for name in ("first", "second")
    ]
    names = ("streamrec", "content", "popularity", "decayed-popularity", "cooccurrence", "cooccurrence-cosine")
    for text, results in runs:
        assert all(name in text for name in names)
        assert tuple(results["methods"]) == names
        assert "ml-100k (300 events)" in results["dataset"]
    assert quality(runs[0][1]) == quality(runs[1][1])


def test_evaluate_reads_a_shops_csv_files(tmp_path: Path) -> None:
    """``--dataset csv`` replays the hand-built stream from CSV and the baselines score as computed by hand."""
    events, catalog = tmp_path / "events.csv", tmp_path / "catalog.csv"
    with events.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("user", "item", "timestamp", "type"), *hand_built_rows()])
    with catalog.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [("item", "title", "category", "price"), *((i, TITLES[i], "misc", 10) for i in ITEMS)]
        )
    text, results = evaluated(
        EvaluateOptions(dataset="csv", events=events, catalog=catalog, encoder="hashing", out=tmp_path / "report")
    )
    assert "events: 10 events, 4 products, 4 purchases" in text
    assert results["dataset"] == "events (10 events)"
    for method, (hit_rate, ndcg, mrr) in EXPECTED.items():
        overall = results["methods"][method]["overall"]
        assert (overall["requests"], overall["hit_rate@10"]) == (4, hit_rate)
        assert (overall["ndcg@10"], overall["mrr"]) == pytest.approx((ndcg, mrr))


def hand_built_rows() -> list[tuple[str, str, str, str]]:
    """The hand-built events as CSV rows, timestamps in ISO-8601 to exercise the parser."""
    return [(e.user_id, e.item_id, f"2026-01-01T00:00:00.{e.ts_ms:03d}", e.kind) for e in hand_built().interactions]
