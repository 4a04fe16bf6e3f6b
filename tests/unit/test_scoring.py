"""Blending retrieval similarity with profile affinities into one explained score."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ranker.scoring import Weights, score_hit

WEIGHTS = Weights(category_affinity=0.35, brand_affinity=0.1)
FEATURES = {"categories": {"shoes": 1.0, "bags": 0.5}, "brands": {"swift": 0.8}}
AFFINITIES = st.dictionaries(st.sampled_from(["shoes", "bags", "swift", "nomad"]), st.floats(0, 1), max_size=4)


@given(
    similarity=st.floats(-1, 1),
    category=st.sampled_from(["shoes", "bags", "hats"]),
    brand=st.sampled_from(["swift", "nomad", ""]),
    features=st.fixed_dictionaries({"categories": AFFINITIES, "brands": AFFINITIES}),
    weights=st.builds(Weights, st.floats(0, 2), st.floats(0, 2)),
)
def test_contributions_sum_to_the_score(
    similarity: float, category: str, brand: str, features: dict[str, Any], weights: Weights
) -> None:
    """Every score is exactly the sum of its named contributions, similarity among them."""
    scored = score_hit(similarity, category, brand, features, weights)
    assert set(scored.contributions) == {"similarity", "category_affinity", "brand_affinity"}
    assert scored.contributions["similarity"] == similarity
    assert scored.score == pytest.approx(sum(scored.contributions.values()))


@pytest.mark.parametrize(
    ("category", "brand", "features", "expected"),
    [
        ("shoes", "swift", FEATURES, {"similarity": 0.5, "category_affinity": 0.35, "brand_affinity": 0.08}),
        ("bags", "nomad", FEATURES, {"similarity": 0.5, "category_affinity": 0.175, "brand_affinity": 0.0}),
        ("hats", "", FEATURES, {"similarity": 0.5, "category_affinity": 0.0, "brand_affinity": 0.0}),
        ("shoes", "swift", {}, {"similarity": 0.5, "category_affinity": 0.0, "brand_affinity": 0.0}),
    ],
    ids=["both-affinities", "category-only", "no-affinity-no-brand", "cold-start"],
)
def test_contributions_weight_the_profile_affinities(
    category: str, brand: str, features: dict[str, Any], expected: dict[str, float]
) -> None:
    """Affinity terms are the weight times the profile's affinity; unknown names and cold users add nothing."""
    scored = score_hit(0.5, category, brand, features, WEIGHTS)
    assert scored.contributions == pytest.approx(expected)
    assert scored.score == pytest.approx(sum(expected.values()))


def test_cosine_co_visitation_counts_with_its_own_weight() -> None:
    """The fixed blend adds the cosine form of co-visitation times its weight, and only when the weight is set."""
    weights = Weights(0.35, 0.1, covisitation=1.0, covisit_cosine=2.0)
    scored = score_hit(0.5, "shoes", "", {}, weights, covisitation=0.25, covisit_cosine=0.5)
    assert scored.contributions["covisit_cosine"] == pytest.approx(1.0)
    assert scored.score == pytest.approx(0.5 + 0.25 + 1.0)
    assert "covisit_cosine" not in score_hit(0.5, "shoes", "", {}, WEIGHTS, covisit_cosine=0.5).contributions
