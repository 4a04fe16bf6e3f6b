"""The ranking features: one place that names them and computes them.

The API computes them at serving time, logs them with the impression, and the
learner trains on exactly those logged values, so training and serving can
never disagree about a feature.

>>> f = ranking_features(similarity=0.5, category_affinity=1.0, brand_affinity=0.0, popularity=0.0,
...                      ctr=0.1, price=20.0, user_price=20.0, age_days=0.0, position=1)
>>> f["price_fit"], f["position"]
(1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FEATURES = (
    "similarity",
    "category_affinity",
    "brand_affinity",
    "popularity",
    "ctr",
    "price_fit",
    "freshness",
    "position",
    "covisitation",
    "covisit_cosine",
    "from_content",
    "from_covisit",
    "from_popular",
    "from_category",
)
# The candidate sources a feature flags; the ranker names them the same.
SOURCES = ("content", "covisit", "popular", "category")


def ranking_features(
    *,
    similarity: float,
    category_affinity: float,
    brand_affinity: float,
    popularity: float,
    ctr: float,
    price: float,
    user_price: float | None,
    age_days: float,
    position: int,
    covisitation: float = 0.0,
    covisit_cosine: float = 0.0,
    sources: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """Feature values of one candidate shown at ``position`` (1-based).

    ``covisitation`` is how strongly the shopper's recent products point at
    this one (how often their shoppers went on to it), ``covisit_cosine`` the
    same damped by this product's own popularity; ``sources`` the
    candidate sources that proposed it, so the model can learn their blend.
    """
    if user_price is None or user_price <= 0 or price <= 0:
        price_fit = 0.5  # no history: neither a fit nor a misfit
    else:
        ratio = price / user_price
        # A ratio that under- or overflows is infinitely far from the shopper's prices.
        price_fit = math.exp(-abs(math.log(ratio))) if 0 < ratio < math.inf else 0.0
    return {
        "similarity": similarity,
        "category_affinity": category_affinity,
        "brand_affinity": brand_affinity,
        "popularity": math.log1p(max(popularity, 0.0)),
        "ctr": ctr,
        "price_fit": price_fit,
        "freshness": math.exp(-max(age_days, 0.0) / 30.0),
        # Position bias: lower slots get fewer clicks whatever they show; the
        # model learns that bias from the logged position so the other
        # weights need not. At serving time every candidate is scored as if
        # shown first (position 1 -> 0.0), so the bias never reorders results.
        "position": math.log2(position),
        "covisitation": math.log1p(max(covisitation, 0.0)),
        "covisit_cosine": math.log1p(max(covisit_cosine, 0.0)),
        **{f"from_{source}": float(source in sources) for source in SOURCES},
    }


def feature_matrix(
    *,
    similarity: NDArray[np.float64],
    category_affinity: NDArray[np.float64],
    brand_affinity: NDArray[np.float64],
    popularity: NDArray[np.float64],
    ctr: NDArray[np.float64],
    price: NDArray[np.float64],
    user_price: float | None,
    age_days: NDArray[np.float64],
    covisitation: NDArray[np.float64],
    covisit_cosine: NDArray[np.float64],
    sources: Sequence[frozenset[str]],
) -> NDArray[np.float64]:
    """:func:`ranking_features` of many candidates at once (position 1), one row each, columns in ``FEATURES`` order.

    The ranker scores hundreds of candidates per request; a dict per candidate
    cost more than the model. Row ``i`` equals ``ranking_features`` of
    candidate ``i`` (``tests/unit/test_features.py`` checks it).
    """
    # Extreme ratios over- or underflow to inf or 0, as in the scalar path: a fit of 0, no warning.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        if user_price is None or user_price <= 0:
            price_fit = np.full(len(price), 0.5)
        else:
            fit = np.exp(-np.abs(np.log(price / user_price)))
            price_fit = np.where(price > 0, fit, 0.5)
    columns = {
        "similarity": similarity,
        "category_affinity": category_affinity,
        "brand_affinity": brand_affinity,
        "popularity": np.log1p(np.maximum(popularity, 0.0)),
        "ctr": ctr,
        "price_fit": price_fit,
        "freshness": np.exp(-np.maximum(age_days, 0.0) / 30.0),
        "position": np.zeros(len(similarity)),
        "covisitation": np.log1p(np.maximum(covisitation, 0.0)),
        "covisit_cosine": np.log1p(np.maximum(covisit_cosine, 0.0)),
        **{f"from_{source}": np.array([float(source in s) for s in sources]) for source in SOURCES},
    }
    return np.column_stack([columns[name] for name in FEATURES]).astype(np.float64)


def row_features(matrix: NDArray[np.float64], index: int) -> dict[str, float]:
    """Row ``index`` of :func:`feature_matrix` as the dict ``ranking_features`` gives (what impressions log)."""
    return dict(zip(FEATURES, matrix[index].tolist(), strict=True))
