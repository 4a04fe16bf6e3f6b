"""Candidate sources (co-visitation, popularity, content, category) as pure functions and merged by the recommender."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from online_learning.features import SOURCES
from online_learning.item_stats import ItemStats
from online_learning.model import RankingModel
from online_learning.snapshot import Snapshot
from ranker import candidates
from ranker.impressions import MemorySink
from ranker.models import ModelHolder
from ranker.service import Recommender, Results
from ranker.settings import CandidateSource, RankerSettings
from ranker.store import ItemRow, MemoryStore, PopularList, ProductFilter, ProductRow, UserRow, Vector

DIM = 64
HOUR_MS = 3_600_000
NOW_MS = 1_767_312_000_000  # a day after the catalog's products were added
SETTINGS = RankerSettings(covisit_half_life_s=HOUR_MS / 1000)

MakeRecommender = Callable[..., Recommender]


class CountingStore(MemoryStore):
    """A memory store that counts the calls the candidate sources make."""

    def __init__(self) -> None:
        super().__init__()
        self.popular_calls = 0
        self.item_lookups: list[list[str]] = []
        self.neighbor_lookups: list[bool] = []  # per lookup: whether neighbours were asked for

    def popular_lists(self) -> list[PopularList]:
        self.popular_calls += 1
        return super().popular_lists()

    def get_items(self, item_ids: Any, *, neighbors: bool = True) -> dict[str, ItemRow]:
        self.item_lookups.append(list(item_ids))
        self.neighbor_lookups.append(neighbors)
        return super().get_items(item_ids, neighbors=neighbors)


@pytest.fixture
def store(catalog_rows: list[ProductRow]) -> CountingStore:
    """A store holding the shared catalog, with no item rows or popular lists yet."""
    store = CountingStore()
    store.upsert_products(catalog_rows)
    return store


@pytest.fixture
def make(store: CountingStore, encoder: HashingTextEncoder) -> Iterator[MakeRecommender]:
    """Build a recommender over ``store`` whose clock reads ``NOW_MS``, with the given settings and sink."""
    encoders: list[AsyncEncoder] = []

    def build(settings: RankerSettings = SETTINGS, sink: MemorySink | None = None) -> Recommender:
        encoders.append(AsyncEncoder(encoder))
        return Recommender(store, encoders[-1], settings, impressions=sink, clock=lambda: NOW_MS / 1000)

    yield build
    for each in encoders:
        each.close()


def user(user_id: str, vector: Vector | None = None, **features: Any) -> UserRow:
    """A served user row; no vector means zero vectors (no signal yet)."""
    chosen = np.zeros(DIM, dtype=np.float32) if vector is None else vector
    return UserRow(user_id, chosen, chosen, features, updated_at=0)


def row(item_id: str, popularity: float, neighbors: dict[str, float] | None = None, ref_ms: int = NOW_MS) -> ItemRow:
    """An item row stated as of ``ref_ms``."""
    return ItemRow(item_id, popularity, dict(neighbors or {}), ref_ms)


def ids(results: Results) -> list[str]:
    """Product ids of the results, in rank order."""
    return [item.product.product_id for item in results.items]


def recommend(recommender: Recommender, user_id: str, k: int, exclude: frozenset[str] = frozenset()) -> Results:
    """Run one recommendation request."""
    return asyncio.run(recommender.recommend(user_id, k, exclude))


# --- pure functions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref_ms", "now_ms", "expected"),
    [(0, 0, 1.0), (0, 1000, 0.5), (0, 3000, 0.125), (5000, 1000, 1.0)],
    ids=["now", "one-half-life", "three-half-lives", "now-before-the-row"],
)
def test_decay_halves_per_half_life_and_never_grows(ref_ms: int, now_ms: float, expected: float) -> None:
    """A value stated at ``ref_ms`` halves per half-life until ``now_ms``; a reader behind the row reads it as is."""
    assert candidates.decay(ref_ms, now_ms, 1000) == pytest.approx(expected)


def test_covisit_scores_are_how_often_shoppers_of_a_recent_product_went_on_to_each_neighbour() -> None:
    """The conditional form of one recent product is ``C(i, j) / N(i)``."""
    rows = {"a": row("a", 4.0, {"b": 2.0, "c": 1.0})}
    conditional, _ = candidates.covisit_scores(["a"], rows, NOW_MS, HOUR_MS)
    assert conditional == pytest.approx({"b": 0.5, "c": 0.25})


def test_covisit_scores_weigh_the_newest_recent_product_most() -> None:
    """Neighbours of the product touched last outscore equally strong neighbours of one touched before."""
    rows = {"old": row("old", 1.0, {"x": 1.0}), "new": row("new", 1.0, {"y": 1.0})}
    conditional, partial = candidates.covisit_scores(["old", "new"], rows, NOW_MS, HOUR_MS)
    assert conditional["y"] > conditional["x"] > 0
    assert partial["y"] > partial["x"] > 0


@pytest.mark.parametrize(
    ("history", "rows"),
    [
        (["a", "a", "a"], {"a": row("a", 2.0, {"b": 1.0})}),
        (["gone", "a"], {"a": row("a", 2.0, {"b": 1.0})}),
        (["zero", "a"], {"a": row("a", 2.0, {"b": 1.0}), "zero": row("zero", 0.0, {"b": 9.0})}),
    ],
    ids=["repeated", "no-row", "no-popularity"],
)
def test_covisit_scores_count_each_recent_product_once_and_skip_unknown_ones(
    history: list[str], rows: dict[str, ItemRow]
) -> None:
    """A repeated recent product, one without a row and one nobody touched add nothing beyond ``["a"]`` alone."""
    assert candidates.covisit_scores(history, rows, NOW_MS, HOUR_MS) == candidates.covisit_scores(
        ["a"], rows, NOW_MS, HOUR_MS
    )


def test_normalised_covisits_are_the_cosine_and_skip_products_without_a_row() -> None:
    """At the rows' time, the normalised score is ``C(i, j) / sqrt(N(i) N(j))``; a neighbour with no row gets none."""
    rows = {"a": row("a", 4.0, {"b": 2.0, "ghost": 1.0}), "b": row("b", 1.0, {"a": 2.0})}
    _, partial = candidates.covisit_scores(["a"], rows, NOW_MS, HOUR_MS)
    scores = candidates.normalise_covisits(partial, rows, now_ms=NOW_MS, half_life_ms=HOUR_MS)
    assert scores == pytest.approx({"b": 2.0 / (4.0 * 1.0) ** 0.5})


def test_popular_items_merge_partitions_by_decayed_score() -> None:
    """Lists are brought to ``now_ms`` before they compare; a product in two lists keeps its best score."""
    lists = [
        PopularList(0, {"big-then": 8.0, "both": 1.0}, NOW_MS - 3 * HOUR_MS),
        PopularList(1, {"small-now": 2.0, "both": 0.5, "tie": 2.0}, NOW_MS),
    ]
    merged = candidates.popular_items(lists, NOW_MS, HOUR_MS)
    assert list(merged) == ["small-now", "tie", "big-then", "both"]
    assert merged == pytest.approx({"small-now": 2.0, "tie": 2.0, "big-then": 1.0, "both": 0.5})


def test_popularity_of_a_product_nobody_touched_is_zero() -> None:
    """No row, no popularity; a row's popularity decays from its time."""
    assert candidates.popularity(None, NOW_MS, HOUR_MS) == 0.0
    assert candidates.popularity(row("a", 4.0, ref_ms=NOW_MS - 2 * HOUR_MS), NOW_MS, HOUR_MS) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("limit", "exclude", "expected"),
    [(2, frozenset(), ["a", "b"]), (5, frozenset({"a"}), ["b", "c", "d"]), (0, frozenset(), [])],
    ids=["limit", "exclude", "none"],
)
def test_top_takes_the_best_not_excluded_ties_by_id(limit: int, exclude: frozenset[str], expected: list[str]) -> None:
    """The best ``limit`` scores not excluded, best first, equal scores in id order."""
    assert candidates.top({"d": 1.0, "c": 2.0, "b": 2.0, "a": 3.0}, limit, exclude) == expected


# --- a new shopper -------------------------------------------------------------------------------------------------


def test_a_new_shopper_gets_the_most_popular_products_by_decayed_popularity(
    make: MakeRecommender, store: CountingStore
) -> None:
    """An older, bigger count that decayed below a newer one ranks below it: the list follows popularity now."""
    store.upsert_popular(
        [
            PopularList(0, {"belt": 4.0, "hat": 0.2}, NOW_MS - 3 * HOUR_MS),  # belt decays to 0.5
            PopularList(1, {"bag": 1.0, "jeans": 0.6}, NOW_MS),
        ]
    )
    results = recommend(make(), "u-new", 10)
    assert (results.strategy, results.personalized) == ("popular", False)
    assert ids(results)[:4] == ["bag", "jeans", "belt", "hat"]
    assert [item.score for item in results.items[:4]] == pytest.approx([1.0, 0.6, 0.5, 0.025])
    assert {item.sources for item in results.items[:4]} == {("popular",)}
    assert results.items[0].to_json(explain=True)["sources"] == ["popular"]
    # Too few popular products yet: the rest of the page is the catalog's range, after them.
    in_stock = [row for row in store.browse_products(100, ProductFilter()) if row.in_stock]
    assert len(results.items) == min(10, len(in_stock)) == len(set(ids(results)))
    assert {item.sources for item in results.items[4:]} <= {()}


def test_a_new_shopper_never_gets_sold_out_deleted_or_excluded_products(
    make: MakeRecommender, store: CountingStore
) -> None:
    """Popular products sold out or deleted since they were counted drop out, and so does what the caller excludes."""
    store.upsert_popular(
        [PopularList(0, {"shoe-sold-out": 9.0, "gone": 8.0, "belt": 3.0, "bag": 2.0, "hat": 1.0}, NOW_MS)]
    )
    results = recommend(make(), "u-new", 2, exclude=frozenset({"belt"}))
    assert ids(results) == ["bag", "hat"]


@pytest.mark.parametrize(
    ("sources", "lists"),
    [
        (SETTINGS.candidate_sources, []),
        (("content", "covisit", "category"), [PopularList(0, {"bag": 5.0}, NOW_MS)]),
    ],
    ids=["no-popularity-yet", "popular-source-off"],
)
def test_without_popularity_a_new_shopper_sees_the_range_of_the_catalog(
    make: MakeRecommender, store: CountingStore, sources: tuple[CandidateSource, ...], lists: list[PopularList]
) -> None:
    """With nothing popular to show, the cold list interleaves categories, and is still logged as an impression."""
    store.upsert_popular(lists)
    sink = MemorySink()
    results = recommend(make(SETTINGS.model_copy(update={"candidate_sources": sources}), sink), "u-new", 4)
    assert results.strategy == "popular"
    assert len({item.product.category for item in results.items}) == 4
    (impression,) = sink.logged
    assert [item["product_id"] for item in impression["items"]] == ids(results)
    assert (impression["user_id"], impression["surface"]) == ("u-new", "recommendations")


def test_a_popular_cold_list_is_logged_with_its_features(make: MakeRecommender, store: CountingStore) -> None:
    """The impression of a popular list carries each product's popularity feature and its source flag."""
    store.upsert_popular([PopularList(0, {"bag": 3.0, "hat": 1.0}, NOW_MS)])
    sink = MemorySink()
    results = recommend(make(sink=sink), "u-new", 2)
    (impression,) = sink.logged
    assert [item["product_id"] for item in impression["items"]] == ids(results) == ["bag", "hat"]
    features = impression["items"][0]["features"]
    assert features["popularity"] == pytest.approx(np.log1p(3.0))
    assert {name: features[f"from_{name}"] for name in SOURCES} == {
        "content": 0.0,
        "covisit": 0.0,
        "popular": 1.0,
        "category": 0.0,
    }


# --- a known shopper -----------------------------------------------------------------------------------------------


def test_co_visitation_proposes_the_known_neighbour_and_explains_it(
    make: MakeRecommender, store: CountingStore
) -> None:
    """A shopper who just clicked the red shoes is shown what others went on to, with "covisit" as the source."""
    store.upsert_items(
        [
            row("shoe-red", 4.0, {"backpack": 3.0, "hat": 1.0}),
            row("backpack", 3.0, {"shoe-red": 3.0}),
            row("hat", 5.0, {"shoe-red": 1.0}),
        ]
    )
    store.upsert_users([user("u", recent_items=["shoe-red"])])
    results = recommend(make(), "u", 5)
    assert (results.strategy, results.personalized) == ("personalized", True)
    assert ids(results)[:2] == ["backpack", "hat"]
    top = results.items[0]
    assert top.sources == ("covisit",)
    explained = top.to_json(explain=True)
    assert explained["sources"] == ["covisit"]
    assert explained["contributions"]["covisitation"] > 0
    assert top.contributions["covisitation"] == pytest.approx(SETTINGS.covisit_weight * top.features["covisitation"])
    assert top.features["from_covisit"] == 1.0


def test_a_product_from_several_sources_names_them_all(
    make: MakeRecommender, store: CountingStore, embed: Callable[[str], Vector]
) -> None:
    """A neighbour that is also similar and popular is proposed once, naming every source, and features flag each."""
    store.upsert_items([row("shoe-red", 2.0, {"shoe-blue": 2.0}), row("shoe-blue", 2.0, {"shoe-red": 2.0})])
    store.upsert_popular([PopularList(0, {"shoe-blue": 2.0}, NOW_MS)])
    store.upsert_users([user("u", embed("running shoes"), recent_items=["shoe-red"])])
    results = recommend(make(), "u", 10)
    assert ids(results).count("shoe-blue") == 1
    (blue,) = [item for item in results.items if item.product.product_id == "shoe-blue"]
    assert blue.sources == ("content", "covisit", "popular")
    assert {name: blue.features[f"from_{name}"] for name in SOURCES} == {
        "content": 1.0,
        "covisit": 1.0,
        "popular": 1.0,
        "category": 0.0,
    }
    assert ids(results)[0] == "shoe-blue"


@pytest.mark.parametrize("field", ["purchased", "recent_items", "exclude"])
def test_clicked_purchased_and_excluded_products_never_come_back(
    make: MakeRecommender, store: CountingStore, embed: Callable[[str], Vector], field: str
) -> None:
    """A product every source proposes is left out once bought, touched lately, or excluded by the caller."""
    store.upsert_items(
        [
            row("shoe-red", 4.0, {"shoe-blue": 3.0, "bag": 1.0}),
            row("shoe-blue", 3.0, {"shoe-red": 3.0}),
            row("bag", 1.0, {"shoe-red": 1.0}),
        ]
    )
    store.upsert_popular([PopularList(0, {"shoe-blue": 5.0, "shoe-red": 4.0, "bag": 1.0}, NOW_MS)])
    features: dict[str, Any] = {"recent_items": ["shoe-red"], "purchased": [], "categories": {"shoes": 1.0}}
    exclude: frozenset[str] = frozenset()
    if field == "exclude":
        exclude = frozenset({"shoe-blue"})
    else:
        features[field] = [*features[field], "shoe-blue"]
    store.upsert_users([user("u", embed("running shoes"), **features)])
    results = recommend(make(), "u", 10, exclude)
    assert results.strategy == "personalized"
    assert not {"shoe-blue", "shoe-red"} & set(ids(results))
    assert "bag" in ids(results)


@pytest.mark.parametrize("source", ["covisit", "popular"])
def test_sold_out_and_deleted_products_are_dropped_from_counted_sources(
    make: MakeRecommender, store: CountingStore, source: str
) -> None:
    """Counts made before a product sold out or was deleted never bring it back; the in-stock one still comes."""
    counted = {"shoe-sold-out": 10.0, "gone": 9.0, "belt": 1.0}
    if source == "covisit":
        store.upsert_items([ItemRow("shoe-red", 20.0, counted, NOW_MS), *(row(i, 1.0) for i in counted)])
    else:
        store.upsert_popular([PopularList(0, counted, NOW_MS)])
    store.upsert_users([user("u", recent_items=["shoe-red"])])
    results = recommend(make(), "u", 5)
    assert results.strategy == "personalized"
    assert ids(results) == ["belt"]
    assert results.items[0].sources == (source,)


def test_only_the_history_rows_are_read_with_their_neighbours(make: MakeRecommender, store: CountingStore) -> None:
    """Candidates' rows are read for their counts; neighbours are read for the shopper's recent products alone."""
    store.upsert_items([row("shoe-red", 4.0, {"hat": 4.0, "wallet": 1.0}), row("hat", 4.0, {"shoe-red": 4.0})])
    store.upsert_users([user("u", None, recent_items=["shoe-red"])])
    store.item_lookups, store.neighbor_lookups = [], []
    result = recommend(make(), "u", 10)
    assert "hat" in {item.product.product_id for item in result.items}
    with_neighbors = [ids for ids, wanted in zip(store.item_lookups, store.neighbor_lookups, strict=True) if wanted]
    assert with_neighbors == [["shoe-red"]]
    assert any("hat" in ids for ids in store.item_lookups)  # the candidate's counts were read, without neighbours


def test_content_only_sources_use_the_vector_search_alone(
    make: MakeRecommender, store: CountingStore, embed: Callable[[str], Vector]
) -> None:
    """With ``candidate_sources=("content",)`` every result comes from the vector search; no other source is asked."""
    store.upsert_items([row("shoe-red", 4.0, {"hat": 4.0}), row("hat", 4.0, {"shoe-red": 4.0})])
    store.upsert_popular([PopularList(0, {"wallet": 10.0}, NOW_MS)])
    store.upsert_users([user("u", embed("running shoes"), recent_items=["shoe-red"])])
    mixed = recommend(make(), "u", 10)
    assert {"covisit", "popular"} <= {source for item in mixed.items for source in item.sources}

    store.popular_calls, store.item_lookups = 0, []
    only = recommend(make(SETTINGS.model_copy(update={"candidate_sources": ("content",)})), "u", 10)
    assert only.strategy == "personalized"
    assert {item.sources for item in only.items} == {("content",)}
    assert all(item.features["covisitation"] == 0.0 for item in only.items)
    assert store.popular_calls == 0
    assert all("shoe-red" not in lookup for lookup in store.item_lookups)  # the history's neighbours were not read


def test_with_the_category_source_off_such_a_shopper_gets_popular_products_ranked_by_affinity(
    make: MakeRecommender, store: CountingStore
) -> None:
    """No vector and no category source: popular products are the candidates, the favourite category's first."""
    store.upsert_popular([PopularList(0, {"hat": 1.0, "backpack": 0.5}, NOW_MS)])
    store.upsert_users([user("u-bags", categories={"bags": 1.0})])
    settings = SETTINGS.model_copy(update={"candidate_sources": ("content", "covisit", "popular")})
    results = recommend(make(settings), "u-bags", 5)
    assert (results.strategy, ids(results)) == ("personalized", ["backpack", "hat"])
    assert {item.sources for item in results.items} == {("popular",)}


@pytest.mark.parametrize("later", [0, 1, 3])
def test_normalised_covisits_do_not_drift_as_time_passes(later: int) -> None:
    """Counts that all decay alike keep their cosine: reading the same rows later gives the same score."""
    rows = {"a": row("a", 4.0, {"b": 2.0}), "b": row("b", 1.0, {"a": 2.0})}
    now_ms = NOW_MS + later * HOUR_MS
    _, partial = candidates.covisit_scores(["a"], rows, now_ms, HOUR_MS)
    scores = candidates.normalise_covisits(partial, rows, now_ms=now_ms, half_life_ms=HOUR_MS)
    assert scores == pytest.approx({"b": 1.0})


@pytest.mark.parametrize("later", [0, 1, 5])
def test_the_popular_ranking_made_once_keeps_the_order_of_a_merge_at_any_later_time(later: int) -> None:
    """Merged once as of the newest list, the ranking lists and scores products as a merge at a later time does."""
    lists = [
        PopularList(0, {"big-then": 8.0, "both": 1.0, "seen": 9.0}, NOW_MS - 3 * HOUR_MS),
        PopularList(1, {"small-now": 2.0, "both": 0.5, "tie": 2.0}, NOW_MS),
    ]
    ranking = candidates.PopularRanking.of(lists, HOUR_MS)
    now_ms = NOW_MS + later * HOUR_MS
    merged = candidates.popular_items(lists, now_ms, HOUR_MS)
    exclude = frozenset({"seen", "tie"})
    assert ranking.top(3, exclude) == candidates.top(merged, 3, exclude)
    assert {i: ranking.score(i, now_ms, HOUR_MS) for i in merged} == pytest.approx(merged)


@given(
    lists=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), max_size=6),
            st.integers(0, 3),
        ),
        max_size=4,
    ),
    exclude=st.frozensets(st.sampled_from("abcdefgh")),
    limit=st.integers(0, 9),
)
def test_the_lazy_popular_ranking_equals_the_full_merge(
    lists: list[tuple[dict[str, float], int]], exclude: frozenset[str], limit: int
) -> None:
    """Its top and scores are those of ``popular_items`` as of the newest list: ties by id, a repeat at its best."""
    held = [PopularList(partition, items, NOW_MS - hours * HOUR_MS) for partition, (items, hours) in enumerate(lists)]
    ranking = candidates.PopularRanking.of(held, HOUR_MS)
    merged = candidates.popular_items(held, ranking.ref_ms, HOUR_MS)
    assert ranking.top(limit, exclude) == candidates.top(merged, limit, exclude)
    assert list(ranking.scores) == list(merged)
    assert ranking.scores == pytest.approx(merged)


def test_the_recommender_merges_the_popular_lists_again_only_when_they_change(
    make: MakeRecommender, store: CountingStore
) -> None:
    """Requests over unchanged lists share one merged ranking; a new list replaces it."""
    store.upsert_popular([PopularList(0, {"hat": 5.0, "backpack": 1.0}, NOW_MS)])
    store.upsert_users([user("u", recent_items=["shoe-red"])])
    recommender = make()
    recommend(recommender, "u", 5)
    first = recommender._popular_ranking(store.popular_lists())
    recommend(recommender, "u", 5)
    assert recommender._popular_ranking(store.popular_lists()) is first
    store.upsert_popular([PopularList(0, {"backpack": 9.0}, NOW_MS)])
    assert recommender._popular_ranking(store.popular_lists()).ids == ("backpack",)


def test_the_cosine_feature_of_a_candidate_with_a_newer_row_is_read_as_of_that_row() -> None:
    """One pass over the history gives the cosine of two passes: partial sums moved to a later time by one factor."""
    rows = {"a": row("a", 4.0, {"b": 2.0}, ref_ms=NOW_MS - HOUR_MS), "b": row("b", 1.0, {"a": 2.0}, ref_ms=NOW_MS)}
    _, early = candidates.covisit_scores(["a"], rows, NOW_MS - HOUR_MS, HOUR_MS)
    _, late = candidates.covisit_scores(["a"], rows, NOW_MS, HOUR_MS)
    shift = candidates.decay(NOW_MS - HOUR_MS, NOW_MS, HOUR_MS) ** 0.5
    assert {j: v * shift for j, v in early.items()} == pytest.approx(late)


def _contrary_snapshot() -> Snapshot:
    """A served model that learned the opposite of the blend: the less similar, the likelier bought."""
    rng = random.Random(0)
    model = RankingModel.create("logreg")
    for _ in range(400):
        similarity = rng.uniform(-1.0, 1.0)
        model.learn({"similarity": similarity, "position": 0.0}, clicked=similarity < -0.3)
    return Snapshot(1, 0, model, ItemStats(3600.0), {0: 1})


@pytest.mark.parametrize(("pool_factor", "same_as_blend"), [(1, True), (100, False)])
def test_the_learned_model_re_ranks_only_the_blends_best_k_times_the_pool_factor(
    store: CountingStore,
    encoder: HashingTextEncoder,
    embed: Callable[[str], Vector],
    pool_factor: int,
    same_as_blend: bool,
) -> None:
    """A model trained on the blend's short lists never reaches past them: with factor 1 it reorders its top k."""
    store.upsert_users([user("u", embed("running shoes"))])
    holder = ModelHolder(min_examples=1, min_auc=0.0)
    assert holder.offer(_contrary_snapshot())
    runner = AsyncEncoder(encoder)
    try:
        blend = recommend(Recommender(store, runner, SETTINGS, clock=lambda: NOW_MS / 1000), "u", 2)
        settings = SETTINGS.model_copy(update={"model_pool_factor": pool_factor})
        learned = recommend(Recommender(store, runner, settings, models=holder, clock=lambda: NOW_MS / 1000), "u", 2)
    finally:
        runner.close()
    assert learned.extra["model_version"] == 1
    assert (set(ids(learned)) == set(ids(blend))) is same_as_blend
    assert len(ids(learned)) == 2
