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
        price_fit = math.exp(-abs(math.log(price / user_price)))
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
