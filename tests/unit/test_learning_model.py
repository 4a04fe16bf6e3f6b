"""The contract every shipped ranking model kind keeps (river's estimator checks, for our wrapper)."""

from __future__ import annotations

import copy
import functools
import math
import pickle
import random
import typing
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from river import metrics

from online_learning.features import FEATURES
from online_learning.model import ModelKind, RankingModel, Score

KINDS: tuple[ModelKind, ...] = typing.get_args(ModelKind)
Stream = list[tuple[dict[str, float], bool]]


def _stream(n: int, seed: int = 7, *, inverted: bool = False) -> Stream:
    """Random candidates; clicked exactly when ctr > 0.1 (or exactly when not, if inverted)."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        features = {name: rng.random() for name in FEATURES}
        features["ctr"] = rng.uniform(0.0, 0.2)
        examples.append((features, (features["ctr"] > 0.1) != inverted))
    return examples


def _trained(kind: ModelKind, n: int = 300, seed: int = 0) -> RankingModel:
    model = RankingModel.create(kind, seed=seed)
    for features, clicked in _stream(n):
        model.learn(features, clicked)
    return model


def _classifier(model: RankingModel) -> typing.Any:
    return model.pipeline[list(model.pipeline.steps)[-1]]


PROBES = [features for features, _ in _stream(20, seed=99)]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> ModelKind:
    """Each shipped model kind in turn."""
    chosen: ModelKind = request.param
    return chosen


def test_every_kind_is_covered() -> None:
    """The battery runs against the kinds the settings offer, so a new kind cannot skip it."""
    from online_learning.settings import LearningSettings

    assert set(KINDS) == set(typing.get_args(LearningSettings.model_fields["model_kind"].annotation))


def test_pickle_round_trip_scores_identically(kind: ModelKind) -> None:
    """A pickled and unpickled trained model gives exactly the same scores and metrics."""
    model = _trained(kind)
    restored = pickle.loads(pickle.dumps(model))
    assert [restored.score(x) for x in PROBES] == [model.score(x) for x in PROBES]
    assert (restored.learned, restored.log_loss.get(), restored.auc.get()) == (
        model.learned,
        model.log_loss.get(),
        model.auc.get(),
    )


def test_same_seed_and_stream_give_identical_probabilities(kind: ModelKind) -> None:
    """Two models created with one seed and fed one stream agree exactly, at every step."""
    first, second = RankingModel.create(kind, seed=42), RankingModel.create(kind, seed=42)
    for features, clicked in _stream(200):
        assert first.probability(features) == second.probability(features)
        first.learn(features, clicked)
        second.learn(features, clicked)
    assert [first.probability(x) for x in PROBES] == [second.probability(x) for x in PROBES]


Call = Callable[[RankingModel, dict[str, float]], object]
CALLS: dict[str, Call] = {
    "learn": lambda model, x: model.learn(x, clicked=True, weight=2.0),
    "score": lambda model, x: model.score(x),
    "probability": lambda model, x: model.probability(x),
    "score_many": lambda model, x: model.score_many([x, x]),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_inputs_are_not_mutated(kind: ModelKind, call: Call) -> None:
    """learn, score, score_many and probability leave the caller's feature dict exactly as it was."""
    model = _trained(kind, n=50)
    features = dict(PROBES[0])
    before = copy.deepcopy(features)
    call(model, features)
    assert features == before


def test_learned_input_is_not_kept_by_the_model(kind: ModelKind) -> None:
    """Changing a dict after it was learned does not change the model."""
    model = _trained(kind, n=50)
    features = dict(PROBES[0])
    model.learn(features, clicked=True)
    expected = [model.probability(x) for x in PROBES]
    features.update(dict.fromkeys(features, 1e6))
    assert [model.probability(x) for x in PROBES] == expected


def test_learns_a_separable_preference(kind: ModelKind) -> None:
    """After a few hundred examples clicked exactly when ctr > 0.1, high ctr scores above low ctr."""
    model = _trained(kind)
    for probe in PROBES:
        assert model.probability({**probe, "ctr": 0.19}) > 0.5 > model.probability({**probe, "ctr": 0.01})
    assert model.healthy() == (True, "ok")


EXTREME = dict.fromkeys(FEATURES, 10.0)  # far outside the training range: logits beyond |30|


@pytest.mark.parametrize("probe", [*PROBES[:5], EXTREME, {}], ids=[*map(str, range(5)), "extreme", "empty"])
def test_contributions_sum_to_the_logit(kind: ModelKind, probe: dict[str, float]) -> None:
    """The per-feature contributions (plus the FM's interactions) add up to the logit the probability comes from."""
    model = _trained(kind)
    score = model.score(probe)
    assert sum(score.contributions.values()) == pytest.approx(score.logit, abs=1e-6)
    assert score.probability == model.probability(probe)
    assert score.probability == pytest.approx(1 / (1 + math.exp(-max(min(score.logit, 700), -700))), abs=1e-9)
    extra = {"intercept", "interactions"} if kind == "fm" else {"intercept"}
    assert set(score.contributions) == set(probe) | extra


def test_logit_does_not_saturate_for_strong_candidates() -> None:
    """Candidates with very large logits still rank by their logit, not tie on a saturated probability."""
    model = _trained("logreg")
    # ctr stays below the scaler's clip bound, so the two inputs really differ.
    strong, stronger = model.score({**EXTREME, "ctr": 0.5}), model.score({**EXTREME, "ctr": 0.55})
    assert stronger.logit > strong.logit > 15  # past |15| a logit recovered from the probability loses precision


@pytest.mark.parametrize("clicked", [True, False])
def test_first_example_is_scored_before_it_is_learned(kind: ModelKind, clicked: bool) -> None:
    """An untrained model's first example costs log 2: it was predicted at 0.5, before learning moved it."""
    model = RankingModel.create(kind)
    model.learn(PROBES[0], clicked)
    assert model.learned == 1
    assert model.log_loss.get() == pytest.approx(math.log(2), abs=1e-12)
    assert model.probability(PROBES[0]) != 0.5  # learning did move it, so the metric saw the earlier guess


def test_metrics_equal_predictions_made_before_each_learn(kind: ModelKind) -> None:
    """Log loss and AUC are exactly those of the predictions made just before each example was learned."""
    model = RankingModel.create(kind)
    log_loss, auc = metrics.LogLoss(), metrics.ROCAUC(n_thresholds=50)
    for features, clicked in _stream(150):
        p = min(max(model.probability(features), 1e-7), 1 - 1e-7)
        log_loss.update(clicked, p)
        auc.update(clicked, {True: p, False: 1 - p})
        model.learn(features, clicked)
    assert model.learned == 150
    assert (model.log_loss.get(), model.auc.get()) == (log_loss.get(), auc.get())


@pytest.mark.parametrize("poisoned", ["ctr", "similarity"])
def test_non_finite_weights_are_unhealthy(kind: ModelKind, poisoned: str) -> None:
    """A model with a NaN weight reports unhealthy with a 'non-finite' reason."""
    model = _trained(kind, n=50)
    weights = _classifier(model)._weights if kind == "logreg" else _classifier(model).weights
    weights[poisoned] = float("nan")  # what a diverging SGD step leaves behind
    healthy, reason = model.healthy()
    assert not healthy
    assert "non-finite" in reason


def _adversarial(model: RankingModel, n: int) -> None:
    """Feed labels that contradict the model's own prediction: its progressive AUC collapses."""
    for features, _ in _stream(n):
        model.learn(features, clicked=model.probability(features) < 0.5)


def test_collapsed_auc_is_unhealthy_once_enough_examples_are_learned(kind: ModelKind) -> None:
    """Progressive AUC below min_auc makes a model unhealthy, but only from min_examples_for_auc examples on."""
    model = RankingModel.create(kind)
    _adversarial(model, 99)
    assert model.auc.get() < 0.4
    assert model.healthy(min_auc=0.4, min_examples_for_auc=100) == (True, "ok")
    _adversarial(model, 1)
    healthy, reason = model.healthy(min_auc=0.4, min_examples_for_auc=100)
    assert not healthy
    assert "AUC" in reason


def test_a_reversed_preference_is_relearned(kind: ModelKind) -> None:
    """After the labels reverse mid-stream, the model follows the new preference."""
    model = RankingModel.create(kind)
    for features, clicked in [*_stream(300, inverted=True), *_stream(300, seed=8)]:
        model.learn(features, clicked)
    assert model.probability({**PROBES[0], "ctr": 0.19}) > model.probability({**PROBES[0], "ctr": 0.01})


def test_clone_is_independent(kind: ModelKind) -> None:
    """Learning on a clone changes the clone only; the original keeps its predictions and counters."""
    model = _trained(kind)
    expected = [model.probability(x) for x in PROBES]
    clone = model.clone()
    for features, clicked in _stream(200, inverted=True):
        clone.learn(features, clicked)
    assert [model.probability(x) for x in PROBES] == expected
    assert model.learned == 300
    assert [clone.probability(x) for x in PROBES] != expected


def test_recent_auc_shows_a_preference_that_turned_while_the_cumulative_one_lags(kind: ModelKind) -> None:
    """After the clicks invert, the AUC over the last 500 examples drops below the cumulative AUC."""
    model = _trained(kind, n=1500)
    assert model.recent_auc.get() > 0.8
    for features, clicked in _stream(500, seed=11, inverted=True):
        model.learn(features, clicked)
    assert model.recent_auc.get() < model.auc.get()


def test_a_model_pickled_without_recent_auc_restores_with_a_fresh_one() -> None:
    """Snapshots published before the recent AUC existed still load."""
    model = _trained("logreg")
    state = dict(model.__dict__)
    del state["recent_auc"]
    old = RankingModel.__new__(RankingModel)
    old.__setstate__(state)
    assert old.probability(PROBES[1]) == model.probability(PROBES[1])
    assert len(old.recent_auc.window) == 0
    old.learn(PROBES[0], True)
    assert len(old.recent_auc.window) == 1


@functools.cache
def _serving(kind: ModelKind) -> RankingModel:
    """A trained model that has also seen "seen_once" exactly once (its deviation is still the floor)."""
    model = _trained(kind)
    model.learn({**PROBES[0], "seen_once": 2.0}, clicked=True)
    return model


def _assert_scores_match(model: RankingModel, rows: list[dict[str, float]]) -> None:
    """score_many(rows) is score(row) for each row, to 1e-9, with the same contribution keys in the same order."""
    expected = [model.score(row) for row in rows]
    got: list[Score] = model.score_many(rows)
    assert len(got) == len(expected)
    close = functools.partial(pytest.approx, rel=1e-9, abs=1e-9, nan_ok=True)
    for one, want in zip(got, expected, strict=True):
        assert list(one.contributions) == list(want.contributions)
        assert [one.probability, one.logit] == close([want.probability, want.logit])
        assert one.contributions == close(want.contributions)


ODD_ROWS: list[dict[str, float]] = [
    {},
    {"ctr": 0.15},  # most features missing
    {"never_seen": 3.0, "similarity": 0.4},
    {"seen_once": 2.5, "ctr": 0.05},
    {"ctr": math.nan, "similarity": math.inf, "popularity": -math.inf},
    {"ctr": 1e300, "similarity": -1e300},  # clipped to the bound
    dict(reversed(PROBES[1].items())),  # same features, other order
    {**EXTREME, "ctr": 0.5},
]


def test_score_many_equals_score_row_by_row(kind: ModelKind) -> None:
    """On a trained model, score_many gives each row exactly what score gives it, rows of any shape mixed."""
    _assert_scores_match(_serving(kind), [*PROBES, EXTREME, *ODD_ROWS])


def test_score_many_of_no_rows_is_empty(kind: ModelKind) -> None:
    """No candidates, no scores."""
    assert _serving(kind).score_many([]) == []


def test_score_many_on_an_untrained_model_equals_score(kind: ModelKind) -> None:
    """A fresh model (no weights, no scaler statistics) scores every row through score_many as score does."""
    _assert_scores_match(RankingModel.create(kind), [*PROBES[:3], *ODD_ROWS])


def test_score_many_keeps_a_nan_weight_to_the_rows_that_have_its_feature() -> None:
    """With a NaN weight, rows carrying that feature score NaN and rows without it stay finite, as in score."""
    model = _trained("logreg", n=50)
    _classifier(model)._weights["ctr"] = float("nan")
    rows = [PROBES[0], {"similarity": 0.3}]
    _assert_scores_match(model, rows)
    first, second = model.score_many(rows)
    assert math.isnan(first.logit)
    assert math.isfinite(second.logit)


NAMES = [*FEATURES, "seen_once", "never_seen"]
ROWS = st.lists(st.dictionaries(st.sampled_from(NAMES), st.floats()), max_size=20)


@pytest.mark.parametrize("kind", KINDS)  # not the fixture: Hypothesis reruns the test body, not fixtures
@given(rows=ROWS)
def test_score_many_equals_score_for_any_rows(kind: ModelKind, rows: list[dict[str, float]]) -> None:
    """For any rows of known, once-seen and unseen features with any float values, score_many equals score."""
    _assert_scores_match(_serving(kind), rows)
