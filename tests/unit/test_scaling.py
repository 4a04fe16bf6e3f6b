"""The model's scaler keeps nearly constant, drifting features from blowing up learning."""

from __future__ import annotations

import math
import random

import pytest

from online_learning.model import ModelKind, RankingModel
from online_learning.scaling import FlooredScaler


@pytest.mark.parametrize("kind", ["logreg", "fm"])
def test_a_nearly_constant_drifting_feature_keeps_weights_finite(kind: ModelKind) -> None:
    """A feature that varies by 1e-12 and then drifts (catalog freshness over time) leaves every weight finite."""
    rng = random.Random(3)
    model = RankingModel.create(kind, seed=3)
    for step in range(3000):
        freshness = 1.9e-5 + rng.random() * 1e-12 + step * 1e-10  # all items the same age, time passing
        ctr = rng.random() * 0.2
        model.learn({"freshness": freshness, "ctr": ctr, "similarity": rng.random()}, clicked=ctr > 0.1)
    assert all(math.isfinite(weight) for weight in model.weights().values())
    assert model.healthy() == (True, "ok")


def test_scaled_values_are_bounded_and_non_finite_inputs_neutral() -> None:
    """Scaled values stay within the bound, and NaN or infinite inputs neither move the statistics nor leak out."""
    scaler = FlooredScaler(min_std=0.05, bound=4.0)
    assert scaler.transform_one({"x": 123.0}) == {"x": 0.0}  # nothing learned yet: neutral
    for value in (0.0, 1.0, float("nan"), float("inf"), 2.0):
        scaler.learn_one({"x": value})
    assert scaler.counts["x"] == 3
    assert scaler.transform_one({"x": 1e9, "y": 1.0})["x"] == 4.0
    assert scaler.transform_one({"x": float("nan")}) == {"x": 0.0}
    assert scaler.transform_one({"x": 1.0}) == {"x": 0.0}
