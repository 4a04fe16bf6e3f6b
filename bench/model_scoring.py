"""µs per candidate to score one request's candidates with the ranking model.

Baseline: ``RankingModel.score`` called once per candidate (how the ranker
scores today). Candidate: ``RankingModel.score_many`` on the whole list. Both
score the same candidates with the same trained model in one process; the
scores are checked to agree and the ratio is printed.

    python bench/model_scoring.py [--candidates 500] [--rounds 50] [--kinds logreg fm]
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import statistics
import time
import typing
from collections.abc import Callable

from online_learning.features import FEATURES
from online_learning.model import ModelKind, RankingModel, Score

Rows = list[dict[str, float]]


def _rows(count: int, rng: random.Random) -> Rows:
    return [{name: rng.random() for name in FEATURES} for _ in range(count)]


def _trained(kind: ModelKind, seed: int) -> RankingModel:
    rng = random.Random(seed)
    model = RankingModel.create(kind, seed=seed)
    for features in _rows(2_000, rng):
        model.learn(features, clicked=rng.random() < features["ctr"])
    return model


def _score_each(model: RankingModel, rows: Rows) -> list[Score]:
    return [model.score(row) for row in rows]


def _us_per_candidate(scorer: Callable[[Rows], list[Score]], rows: Rows, rounds: int) -> float:
    # The median round: one slow round (a GC pause, a noisy neighbour) does not move it.
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        scorer(rows)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / len(rows) * 1e6


def _agree(ones: list[Score], many: list[Score]) -> bool:
    close = functools.partial(math.isclose, rel_tol=1e-9, abs_tol=1e-9)
    return all(
        close(a.probability, b.probability)
        and close(a.logit, b.logit)
        and a.contributions.keys() == b.contributions.keys()
        and all(close(a.contributions[k], b.contributions[k]) for k in a.contributions)
        for a, b in zip(ones, many, strict=True)
    )


def main() -> None:
    """Print µs per candidate of both ways per model kind, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--kinds", nargs="+", choices=typing.get_args(ModelKind), default=["logreg", "fm"])
    args = parser.parse_args()
    print(f"{args.candidates} candidates, median of {args.rounds} rounds")
    print(f"{'kind':<8}{'score µs/cand':>15}{'score_many µs/cand':>20}{'request ms':>12}{'ratio':>8}{'agree':>7}")
    for kind in args.kinds:
        model = _trained(kind, seed=1)
        rows = _rows(args.candidates, random.Random(2))
        one_by_one = _us_per_candidate(functools.partial(_score_each, model), rows, args.rounds)
        batched = _us_per_candidate(model.score_many, rows, args.rounds)
        agree = _agree(_score_each(model, rows), model.score_many(rows))
        request_ms = batched * args.candidates / 1000
        print(
            f"{kind:<8}{one_by_one:>15.1f}{batched:>20.2f}{request_ms:>12.2f}{one_by_one / batched:>7.1f}x{agree!s:>7}"
        )


if __name__ == "__main__":
    main()
