"""Candidates or ranking: how often the held-out purchase is among streamrec's candidates at all.

Replays a MovieLens-100k slice as ``streamrec evaluate`` does, with the fixed
blend ranking (its lists change no state, so measuring them changes
nothing). Before each purchase it records the merged candidate set the
ranker scored and which sources proposed the purchased product, then
prints candidate recall (the ceiling of any ranking of these candidates),
recall by source and the share of recalled purchases the top 10 and top 20
keep.

    OPENBLAS_NUM_THREADS=1 python bench/candidate_recall.py [--limit 30000] [--encoder model|hashing]
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from online_learning.settings import LearningSettings
from ranker import candidates as sources
from ranker.scoring import Weights
from ranker.service import RankedItem, Recommender
from ranker.settings import RankerSettings
from ranker.store import Hit, ItemRow
from streamrec.evaluation.command import make_encoder
from streamrec.evaluation.data import movielens_100k
from streamrec.evaluation.metrics import Request
from streamrec.evaluation.replay import StreamrecReplay, replay
from streams.settings import StreamSettings


class RecordingRecommender(Recommender):
    """The blend's recommender, keeping the candidates (and their sources) of its last ranked request."""

    last: dict[str, tuple[str, ...]] | None = None

    def _rank(
        self,
        hits: Sequence[Hit],
        profile: dict[str, Any],
        k: int,
        rows: dict[str, ItemRow] | None = None,
        proposed: dict[str, sources.Candidate] | None = None,
        *,
        weights: Weights | None = None,
    ) -> tuple[list[RankedItem], int]:
        found = proposed or {}
        self.last = {
            hit.product.product_id: tuple(sorted(found[hit.product.product_id].sources))
            if hit.product.product_id in found
            else ()
            for hit in hits
        }
        return super()._rank(hits, profile, k, rows, proposed, weights=weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30_000, help="events replayed (default: the first 30%%)")
    parser.add_argument("--encoder", choices=("model", "hashing"), default="model")
    args = parser.parse_args()
    dataset = movielens_100k(args.limit)
    encoder = make_encoder(args.encoder)
    settings = RankerSettings()
    system = StreamrecReplay(
        encoder,
        ranker=settings,
        learning=LearningSettings(),
        profile_half_life_ms=StreamSettings().profile_half_life_s * 1000,
    )
    recorder = RecordingRecommender(system.store, encoder, settings, clock=lambda: system.now_ms / 1000)
    system.rankers["streamrec-blend"] = recorder
    counts: Counter[str] = Counter()
    sizes: list[int] = []

    def on_request(method: str, request: Request) -> None:
        counts["requests"] += 1
        candidates, recorder.last = recorder.last, None
        if candidates is None:  # a new shopper: the popular list is the whole candidate set
            counts["popular list"] += 1
            candidates = dict.fromkeys(request.ranked, ("popular",))
        sizes.append(len(candidates))
        if request.target in candidates:
            counts["recalled"] += 1
            counts.update(f"proposed by {source}" for source in candidates[request.target])
            rank = request.rank
            counts["recalled, in top 10"] += rank is not None and rank <= 10
            counts["recalled, in top 20"] += rank is not None

    try:
        asyncio.run(replay(dataset, system, [], methods=("streamrec-blend",), on_request=on_request))
    finally:
        encoder.close()
    total = counts["requests"]
    print(f"{dataset.name}, first {len(dataset.interactions):,} events: {total:,} purchases ranked before")
    print(f"mean candidates per request: {sum(sizes) / max(len(sizes), 1):.0f}")
    for name in ("recalled", *sorted(n for n in counts if n.startswith("proposed")), "popular list"):
        print(f"{name:<24} {counts[name] / max(total, 1):7.1%} of purchases")
    for name in ("recalled, in top 10", "recalled, in top 20"):
        print(f"{name:<24} {counts[name] / max(counts['recalled'], 1):7.1%} of recalled purchases")


if __name__ == "__main__":
    main()
