"""Ranking metrics of a replay, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from streamrec.evaluation.metrics import Evaluation, MetricSet, Request

CATALOG_SIZE = 52
FILLER = tuple(f"i{n}" for n in range(14))
# Four requests in a stream of 4 events:
#   r0 target a at rank 1, cold, 10 ms
#   r1 target c at rank 3, warm, 20 ms
#   r2 target z at rank 15 (inside the top 20, outside the top 10), cold, 30 ms
#   r3 target q absent, warm, 100 ms
REQUESTS = (
    Request(index=0, total=4, target="a", ranked=("a", "b", "c"), cold=True, latency_s=0.010),
    Request(index=1, total=4, target="c", ranked=("a", "b", "c"), cold=False, latency_s=0.020),
    Request(index=2, total=4, target="z", ranked=(*FILLER, "z", "y"), cold=True, latency_s=0.030),
    Request(index=3, total=4, target="q", ranked=("b",), cold=False, latency_s=0.100),
)
KEYS = ["requests", "hit_rate@10", "ndcg@10", "recall@20", "mrr", "coverage", "latency_p50_ms", "latency_p99_ms"]


@pytest.fixture
def evaluation() -> Evaluation:
    """The four requests above, answered by one method."""
    evaluation = Evaluation(catalog_size=CATALOG_SIZE)
    for request in REQUESTS:
        evaluation.add("streamrec", request)
    return evaluation


def test_overall_summary_matches_hand_arithmetic(evaluation: Evaluation) -> None:
    """Each metric is the mean over requests, coverage counts distinct top-10 items, latency is linear percentiles."""
    assert evaluation.overall("streamrec") == {
        "requests": 4,
        "hit_rate@10": 0.5,  # (1 + 1 + 0 + 0) / 4
        "ndcg@10": pytest.approx(0.375),  # (1/log2(2) + 1/log2(4) + 0 + 0) / 4 = (1 + 0.5) / 4
        "recall@20": 0.75,  # (1 + 1 + 1 + 0) / 4: rank 15 is inside the top 20
        "mrr": pytest.approx(0.35),  # (1 + 1/3 + 1/15 + 0) / 4 = (21/15) / 4
        "coverage": 0.25,  # {a, b, c} and i0..i9 = 13 distinct top-10 items / 52
        "latency_p50_ms": pytest.approx(25.0),  # between 20 and 30
        "latency_p99_ms": pytest.approx(97.9),  # position 0.99 * 3 = 2.97: 30 + 0.97 * (100 - 30)
    }


def test_cold_summary_counts_only_cold_requests(evaluation: Evaluation) -> None:
    """The cold split is r0 and r2 alone."""
    assert evaluation.cold("streamrec") == {
        "requests": 2,
        "hit_rate@10": 0.5,  # (1 + 0) / 2
        "ndcg@10": 0.5,  # (1 + 0) / 2
        "recall@20": 1.0,  # both inside the top 20
        "mrr": pytest.approx(8 / 15),  # (1 + 1/15) / 2
        "coverage": 0.25,  # {a, b, c} and i0..i9, again 13 / 52
        "latency_p50_ms": pytest.approx(20.0),  # midway between 10 and 30
        "latency_p99_ms": pytest.approx(29.8),  # 10 + 0.99 * (30 - 10)
    }


def test_deciles_bucket_by_position_in_the_stream(evaluation: Evaluation) -> None:
    """Request i of n lands in decile i * 10 // n: 0, 2, 5 and 7 for a stream of 4; the other deciles are zeros."""
    deciles = evaluation.by_decile("streamrec")
    assert len(deciles) == 10
    assert [d["requests"] for d in deciles] == [1, 0, 1, 0, 0, 1, 0, 1, 0, 0]
    assert deciles[0]["ndcg@10"] == 1.0  # rank 1
    assert deciles[2]["ndcg@10"] == pytest.approx(0.5)  # rank 3: 1/log2(4)
    assert deciles[2]["mrr"] == pytest.approx(1 / 3)
    assert deciles[5]["recall@20"] == 1.0
    assert deciles[5]["hit_rate@10"] == 0.0
    assert deciles[7]["latency_p99_ms"] == pytest.approx(100.0)  # one request: every percentile is it
    assert deciles[1] == dict.fromkeys(KEYS, 0)


def test_two_requests_share_a_decile_of_a_longer_stream() -> None:
    """In a stream of 20, events 4 and 5 are both in decile 2 (4*10//20 = 2, 5*10//20 = 2)."""
    evaluation = Evaluation(catalog_size=10)
    evaluation.add("m", Request(4, 20, "a", ("b", "a"), cold=False, latency_s=0.0))  # ndcg 1/log2(3)
    evaluation.add("m", Request(5, 20, "a", ("a",), cold=False, latency_s=0.0))  # ndcg 1
    decile = evaluation.by_decile("m")[2]
    assert decile["requests"] == 2
    assert decile["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1) / 2)  # (0.6309 + 1) / 2


def test_rank_eleven_is_a_miss_at_ten_but_counts_for_mrr() -> None:
    """hit@10 and ndcg@10 ignore rank 11; MRR uses the whole list (1/11) and coverage only its first ten."""
    metrics = MetricSet()
    metrics.add(Request(0, 1, "t", (*FILLER[:10], "t"), cold=False, latency_s=0.001))
    summary = metrics.summary(catalog_size=20)
    assert (summary["hit_rate@10"], summary["ndcg@10"], summary["recall@20"]) == (0.0, 0.0, 1.0)
    assert summary["mrr"] == pytest.approx(1 / 11)
    assert summary["coverage"] == 0.5  # i0..i9 shown, "t" was eleventh: 10 / 20


def test_empty_set_summarises_to_zeros() -> None:
    """No requests give requests=0 and zero metrics, not a division error or NaN."""
    assert MetricSet().summary(catalog_size=0) == dict.fromkeys(KEYS, 0)


def test_methods_keep_first_added_order_and_unknown_methods_fail() -> None:
    """Methods are listed in the order first seen; asking for one never added is a KeyError naming it."""
    evaluation = Evaluation(catalog_size=5)
    for method in ("streamrec", "popularity", "streamrec", "random"):
        evaluation.add(method, REQUESTS[0])
    assert evaluation.methods == ("streamrec", "popularity", "random")
    assert evaluation.overall("streamrec")["requests"] == 2
    with pytest.raises(KeyError, match="'itemknn'"):
        evaluation.overall("itemknn")


@pytest.mark.parametrize(("index", "total"), [(4, 4), (-1, 4), (0, 0)])
def test_request_outside_its_stream_is_a_bug(index: int, total: int) -> None:
    """A request whose index is not inside [0, total) is refused at construction."""
    with pytest.raises(ValueError, match="outside a stream"):
        Request(index, total, "a", ("a",), cold=False, latency_s=0.0)
