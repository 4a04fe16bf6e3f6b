"""The feature matrix the ranker scores equals the per-candidate features it logs and the learner trains on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_learning.features import FEATURES, SOURCES, feature_matrix, ranking_features, row_features
from online_learning.model import RankingModel

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
positive = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
candidate = st.fixed_dictionaries(
    {
        "similarity": finite,
        "category_affinity": positive,
        "brand_affinity": positive,
        "popularity": finite,
        "ctr": positive,
        "price": positive,
        "age_days": finite,
        "covisitation": finite,
        "covisit_cosine": finite,
        "sources": st.frozensets(st.sampled_from(SOURCES)),
    }
)


@settings(max_examples=60)
@given(st.lists(candidate, min_size=1, max_size=8), st.one_of(st.none(), positive))
def test_every_row_of_the_matrix_is_the_candidates_ranking_features(
    candidates: list[dict[str, object]], user_price: float | None
) -> None:
    """Row i is ``ranking_features`` of candidate i shown first: serving scores what impressions log."""
    columns = {
        name: np.array([c[name] for c in candidates], dtype=np.float64) for name in candidates[0] if name != "sources"
    }
    matrix = feature_matrix(**columns, user_price=user_price, sources=[c["sources"] for c in candidates])  # type: ignore[misc]
    assert matrix.shape == (len(candidates), len(FEATURES))
    for i, c in enumerate(candidates):
        expected = ranking_features(**c, user_price=user_price, position=1)  # type: ignore[arg-type]
        assert row_features(matrix, i) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert list(row_features(matrix, i)) == list(expected)


@pytest.mark.parametrize("kind", ["logreg", "fm"])
def test_scoring_the_matrix_equals_scoring_each_row(kind: str) -> None:
    """``score_matrix`` gives each row the logit and contributions ``score`` gives it."""
    rng = np.random.default_rng(3)
    model = RankingModel.create(kind, seed=1)  # type: ignore[arg-type]
    for _ in range(300):
        values = rng.random(len(FEATURES))
        model.learn(dict(zip(FEATURES, values.tolist(), strict=True)), clicked=bool(values[0] > 0.6))
    raw = rng.random((20, len(FEATURES)))
    logits, parts, intercept = model.score_matrix(FEATURES, raw)
    for i in range(len(raw)):
        one = model.score(dict(zip(FEATURES, raw[i].tolist(), strict=True)))
        assert logits[i] == pytest.approx(one.logit, rel=1e-9, abs=1e-9)
        if kind == "logreg":
            expected = {name: one.contributions[name] for name in FEATURES}
            assert dict(zip(FEATURES, parts[i].tolist(), strict=True)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert intercept == pytest.approx(one.contributions["intercept"])
