"""Blend retrieval similarity with the shopper's profile into one score.

Every score is a sum of named contributions, so a result can always say why
it ranks where it does.

>>> item = score_hit(0.5, "shoes", "acme", {"categories": {"shoes": 1.0}}, Weights(0.3, 0.1))
>>> round(item.score, 3), item.contributions["category_affinity"]
(0.8, 0.3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the profile terms in the blend."""

    category_affinity: float
    brand_affinity: float
    covisitation: float = 0.0
    popularity: float = 0.0
    covisit_cosine: float = 0.0


@dataclass(frozen=True, slots=True)
class Scored:
    """A score and the contributions it is the sum of."""

    score: float
    contributions: dict[str, float]


def score_hit(
    similarity: float,
    category: str,
    brand: str,
    features: dict[str, Any],
    weights: Weights,
    *,
    covisitation: float = 0.0,
    popularity: float = 0.0,
    covisit_cosine: float = 0.0,
) -> Scored:
    """Score one candidate for a shopper with the given profile features.

    ``covisitation``, ``covisit_cosine`` and ``popularity`` are the
    candidate's ranking feature values (already log-scaled); they count only
    when their weight is set.
    """
    categories: dict[str, float] = features.get("categories", {})
    brands: dict[str, float] = features.get("brands", {})
    contributions = {
        "similarity": similarity,
        "category_affinity": weights.category_affinity * float(categories.get(category, 0.0)),
        "brand_affinity": weights.brand_affinity * float(brands.get(brand, 0.0)) if brand else 0.0,
    }
    if weights.covisitation:
        contributions["covisitation"] = weights.covisitation * covisitation
    if weights.covisit_cosine:
        contributions["covisit_cosine"] = weights.covisit_cosine * covisit_cosine
    if weights.popularity:
        contributions["popularity"] = weights.popularity * popularity
    return Scored(sum(contributions.values()), contributions)
