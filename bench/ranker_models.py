"""Ranking model kinds on a simulated click stream: accuracy, speed and recovery from a preference shift.

Synthetic shoppers see lists of ten products. Whether they click is a
logistic function of the product's true click-through rate (the model sees
only a noisy smoothed estimate of it, as the learner's item statistics give),
the shopper's affinity for its brand, and the slot's position bias; the other
ranking features are noise the model has to learn to ignore. Every model kind
learns the same stream one example at a time and scores each example before
learning it (progressive validation, exactly as the learner does).

Halfway through, the hidden preference flips: shoppers turn to the brands
their profiles rank lowest (a season change the profiles have not caught up
with), and the script counts how many examples each kind needs to recover.

    python bench/ranker_models.py [--seed 0] [--impressions 3000]

Everything but examples/s is deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import math
import time
import typing
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from online_learning.features import ranking_features
from online_learning.model import ModelKind, RankingModel

LIST_SIZE = 10
N_PRODUCTS = 400
N_SHOPPERS = 500
N_BRANDS = 6
WINDOW = 200
TARGET_AUC = 0.7
# The hidden click model: logit = BASE + CTR * (logit(true ctr) - mean) + BRAND * preference - POSITION * log2(slot).
BASE_LOGIT = -1.2
CTR_WEIGHT = 0.8
BRAND_WEIGHT = 5.0
POSITION_BIAS = 0.5
MEAN_CTR_LOGIT = -2.4

Example = tuple[dict[str, float], bool]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def simulate(seed: int, impressions: int) -> tuple[list[Example], list[Example]]:
    """The stream before and after the preference flip, as (features, clicked) pairs."""
    rng = np.random.default_rng(seed)
    true_ctr = 1 / (1 + np.exp(-rng.normal(MEAN_CTR_LOGIT, 0.8, N_PRODUCTS)))
    views = rng.integers(5, 400, N_PRODUCTS)
    clicks = rng.binomial(views, true_ctr)
    observed_ctr = (clicks + 0.5) / (views + 10.0)  # ItemStats' smoothing
    brand = rng.integers(0, N_BRANDS, N_PRODUCTS)
    price = rng.lognormal(3.5, 0.6, N_PRODUCTS)
    age_days = rng.uniform(0, 120, N_PRODUCTS)
    # Each profile's brand affinities, scaled so the favourite brand is 1.0.
    affinity = rng.dirichlet(np.full(N_BRANDS, 0.8), N_SHOPPERS)
    affinity /= affinity.max(axis=1, keepdims=True)
    price_mean = rng.lognormal(3.5, 0.4, N_SHOPPERS)

    phases: tuple[list[Example], list[Example]] = ([], [])
    for i in range(impressions):
        flipped = i >= impressions // 2
        shopper = int(rng.integers(N_SHOPPERS))
        shown = rng.choice(N_PRODUCTS, LIST_SIZE, replace=False)
        for position, product in enumerate(shown, start=1):
            brand_affinity = float(affinity[shopper, brand[product]])
            preference = (0.5 - brand_affinity) if flipped else (brand_affinity - 0.5)
            hidden = (
                BASE_LOGIT
                + CTR_WEIGHT * (_logit(float(true_ctr[product])) - MEAN_CTR_LOGIT)
                + BRAND_WEIGHT * preference
                - POSITION_BIAS * math.log2(position)
            )
            clicked = bool(rng.random() < 1 / (1 + math.exp(-hidden)))
            features = ranking_features(
                similarity=float(rng.uniform(0.3, 0.9)),
                category_affinity=float(rng.random()),
                brand_affinity=brand_affinity,
                popularity=float(clicks[product]) * float(rng.uniform(0.5, 1.0)),
                ctr=float(observed_ctr[product]),
                price=float(price[product]),
                user_price=float(price_mean[shopper]),
                age_days=float(age_days[product]),
                position=position,
            )
            phases[flipped].append((features, clicked))
    return phases


def auc(labels: list[bool], scores: list[float]) -> float:
    """Exact ROC AUC (ties count half); 0.5 when only one class is present.

    >>> auc([True, False, True, False], [0.9, 0.1, 0.4, 0.4])
    0.875
    """
    y, p = np.asarray(labels), np.asarray(scores)
    positive, negative = p[y], p[~y]
    if not len(positive) or not len(negative):
        return 0.5
    wins = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(wins / (len(positive) * len(negative)))


@dataclass
class Run:
    """One model kind fed the stream, with its progressive window."""

    kind: ModelKind
    model: RankingModel
    window: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    seconds: float = 0.0
    learned: int = 0

    def feed(self, stream: list[Example]) -> tuple[list[float], list[float]]:
        """Learn the stream; the progressive predictions, and the window AUC after each (NaN until it is full)."""
        predictions, trace = [], []
        for features, clicked in stream:
            p = self.model.probability(features)  # the prediction learn() validates with, kept for the window
            started = time.perf_counter()
            self.model.learn(features, clicked)
            self.seconds += time.perf_counter() - started
            self.learned += 1
            self.window.append((clicked, p))
            predictions.append(p)
            trace.append(self.window_auc() if len(self.window) == WINDOW else math.nan)
        return predictions, trace

    def window_auc(self) -> float:
        """Exact AUC of the last WINDOW progressive predictions."""
        return auc([clicked for clicked, _ in self.window], [p for _, p in self.window])


def _first_above(trace: list[float], start: int = 0) -> int | None:
    """Examples (1-based) until the window AUC first exceeds the target at or after ``start``."""
    return next((i + 1 for i in range(start, len(trace)) if trace[i] > TARGET_AUC), None)


def _log_loss(stream: list[Example], predictions: list[float]) -> float:
    clipped = np.clip(np.asarray(predictions), 1e-7, 1 - 1e-7)
    y = np.asarray([clicked for _, clicked in stream])
    return float(-np.mean(np.where(y, np.log(clipped), np.log(1 - clipped))))


def _show(count: int | None) -> str:
    return "never" if count is None else str(count)


def main(seed: int, impressions: int) -> None:
    before, after = simulate(seed, impressions)
    rates = [sum(clicked for _, clicked in phase) / len(phase) for phase in (before, after)]
    print(
        f"stream: {impressions} impressions x {LIST_SIZE} = {len(before) + len(after)} examples, seed {seed}; "
        f"the preference flips after example {len(before)}; click rate {rates[0]:.1%} before, {rates[1]:.1%} after"
    )
    kinds: tuple[ModelKind, ...] = typing.get_args(ModelKind)
    runs = [Run(kind, RankingModel.create(kind, seed=seed)) for kind in kinds]

    print(f"\nphase 1: stationary, {len(before)} examples (window = last {WINDOW} progressive predictions)")
    header = f"{'kind':8}{'log loss':>10}{'AUC':>8}{'examples/s':>12}"
    print(f"{header}{'first-window AUC':>18}{'examples to window AUC > 0.7':>30}")
    for run in runs:
        _, trace = run.feed(before)
        print(
            f"{run.kind:8}{run.model.log_loss.get():>10.4f}{run.model.auc.get():>8.4f}"
            f"{run.learned / run.seconds:>12.0f}{trace[WINDOW - 1]:>18.4f}{_show(_first_above(trace)):>30}"
        )
    print(f"({WINDOW} is the least possible: the window must be full)")
    best = min(runs, key=lambda run: run.model.log_loss.get())
    others = ", ".join(f"{run.kind} {run.model.log_loss.get():.4f}" for run in runs if run is not best)
    print(f"winner on log loss: {best.kind} ({best.model.log_loss.get():.4f} vs {others})")

    print(f"\nphase 2: shoppers turn to the brands their profiles rank lowest, {len(after)} examples")
    print(
        f"{'kind':8}{'window AUC at flip':>20}{'lowest after':>14}{'examples to recover':>21}{'phase-2 log loss':>18}"
    )
    for run in runs:
        at_flip = run.window_auc()
        predictions, window_trace = run.feed(after)
        dipped = next((i for i, value in enumerate(window_trace) if value <= TARGET_AUC), None)
        recovered = 0 if dipped is None else _first_above(window_trace, dipped)
        print(
            f"{run.kind:8}{at_flip:>20.4f}{min(window_trace):>14.4f}{_show(recovered):>21}"
            f"{_log_loss(after, predictions):>18.4f}"
        )
    print(
        f"\n(examples to recover: after the flip, until the window AUC is back above {TARGET_AUC} once it fell below)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the simulated stream and the models")
    parser.add_argument("--impressions", type=int, default=3000, help="result lists shown (ten examples each)")
    args = parser.parse_args()
    main(args.seed, args.impressions)
