"""The VectorStore contract, run against the in-memory fake and Milvus Lite alike."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusClient

from ranker.milvus_store import MilvusStore
from ranker.settings import RankerSettings
from ranker.store import (
    ItemRow,
    MemoryStore,
    PopularList,
    ProductFilter,
    ProductRow,
    UserRow,
    Vector,
    VectorStore,
    last_per_key,
)
from streamrec.errors import StoreError

DIM = 8
ProductFactory = Callable[..., ProductRow]


def vec(*components: float) -> Vector:
    """A unit vector of dimension DIM starting with ``components``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return (vector / np.linalg.norm(vector)).astype(np.float32)


MILVUS_SETTINGS = RankerSettings(items_collection="test_items")


@pytest.fixture(scope="module")
def milvus_client(tmp_path_factory: pytest.TempPathFactory) -> MilvusClient:
    """One Milvus Lite file per module: opening it takes seconds, so tests share and clear it."""
    return MilvusClient(uri=str(tmp_path_factory.mktemp("milvus") / "m.db"))


@pytest.fixture(scope="module")
def milvus_store(milvus_client: MilvusClient) -> Iterator[MilvusStore]:
    """The Milvus store on the shared client (closing the store closes the client)."""
    store = MilvusStore(MILVUS_SETTINGS, dim=DIM, client=milvus_client)
    yield store
    store.close()


@pytest.fixture(params=["memory", "milvus"])
def store(request: pytest.FixtureRequest) -> VectorStore:
    """A store of each implementation without products, item rows or popular lists (user ids are unique per test)."""
    if request.param == "memory":
        return MemoryStore()
    shared: MilvusStore = request.getfixturevalue("milvus_store")
    everything = shared.browse_products(10_000, ProductFilter(in_stock_only=False))
    shared.delete_products([row.product_id for row in everything])
    assert shared.count_products() == 0
    # The store has no call to delete item rows (writers only ever replace
    # them), so the test empties the collection through the client it injected.
    client: MilvusClient = request.getfixturevalue("milvus_client")
    client.delete(MILVUS_SETTINGS.items_collection, filter='item_id != ""')
    assert shared.popular_lists() == []
    return shared


def assert_same_product(got: ProductRow, want: ProductRow, with_vector: bool = True) -> None:
    """Fields equal (price to float32 precision), and vectors close when the store returns them."""
    for name in ("product_id", "title", "category", "brand", "in_stock", "updated_at", "model"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.price == pytest.approx(want.price, rel=1e-6)
    if with_vector:
        np.testing.assert_allclose(got.vector, want.vector, rtol=1e-6)


def test_upsert_then_get_returns_the_same_rows(store: VectorStore, make_product: ProductFactory) -> None:
    """Every field and the vector read back as written, including non-ASCII text and sold-out flags."""
    rows = [
        make_product("p1", vec(1, 2, 3), title="Red running shoes", price=89.99),
        make_product("p-é", vec(0, 1), title="Sac à dos 漢字", category="sacs-à-dos", brand="", in_stock=False),
    ]
    store.upsert_products(rows)
    got = store.get_products(["p1", "p-é"])
    assert sorted(got) == ["p-é", "p1"]
    for row in rows:
        assert_same_product(got[row.product_id], row)


def test_get_products_returns_only_known_ids(store: VectorStore, make_product: ProductFactory) -> None:
    """Unknown ids are simply absent from the answer; an empty request gets an empty answer."""
    store.upsert_products([make_product("p1")])
    assert list(store.get_products(["p1", "nope", "p1"])) == ["p1"]
    assert store.get_products([]) == {}


def test_duplicate_ids_in_one_batch_keep_the_last(store: VectorStore, make_product: ProductFactory) -> None:
    """When one batch holds the same id twice, the last row wins and only one is stored."""
    store.upsert_products(
        [make_product("p1", title="first"), make_product("p2"), make_product("p1", vec(0, 1), title="last")]
    )
    assert store.count_products() == 2
    assert_same_product(store.get_products(["p1"])["p1"], make_product("p1", vec(0, 1), title="last"))


def test_upsert_replaces_an_existing_product(store: VectorStore, make_product: ProductFactory) -> None:
    """A later upsert of an id replaces the stored row instead of adding one."""
    store.upsert_products([make_product("p1", title="old", in_stock=True)])
    store.upsert_products([make_product("p1", title="new", in_stock=False, updated_at=2)])
    assert store.count_products() == 1
    assert_same_product(store.get_products(["p1"])["p1"], make_product("p1", title="new", in_stock=False, updated_at=2))


def test_delete_removes_products_and_ignores_unknown_ids(store: VectorStore, make_product: ProductFactory) -> None:
    """Deleted products are gone from get, search and count; unknown ids are ignored."""
    store.upsert_products([make_product("p1"), make_product("p2")])
    store.delete_products(["p1", "never-stored"])
    assert store.count_products() == 1
    assert store.get_products(["p1"]) == {}
    assert [hit.product.product_id for hit in store.search_products(vec(1), 10, ProductFilter())] == ["p2"]


def test_empty_batches_are_no_ops(store: VectorStore) -> None:
    """Empty upserts, deletes and reads change nothing and do not fail."""
    store.upsert_products([])
    store.delete_products([])
    store.upsert_users([])
    store.upsert_items([])
    store.upsert_popular([])
    assert store.count_products() == 0
    assert store.get_items([]) == {}
    assert store.popular_lists() == []


def test_search_returns_best_first_with_inner_product_similarity(
    store: VectorStore, make_product: ProductFactory
) -> None:
    """Search returns up to k products ordered by inner product with the query, with that similarity."""
    store.upsert_products(
        [
            make_product("orthogonal", vec(0, 1)),
            make_product("close", vec(2, 1)),
            make_product("exact", vec(1)),
            make_product("far", vec(1, 2)),
        ]
    )
    hits = store.search_products(vec(1), 3, ProductFilter())
    assert [hit.product.product_id for hit in hits] == ["exact", "close", "far"]
    assert [hit.similarity for hit in hits] == pytest.approx([1.0, 2 / np.sqrt(5), 1 / np.sqrt(5)], rel=1e-5)
    assert_same_product(hits[0].product, make_product("exact"), with_vector=False)


@dataclass(frozen=True)
class Seed:
    """A product of the filter table."""

    product_id: str
    category: str
    in_stock: bool


FILTER_SEEDS = (
    Seed("shoe-1", "shoes", True),
    Seed("shoe-2", "shoes", False),
    Seed("bag-1", "bags", True),
    Seed("sac-é", "sacs-à-dos", True),
    Seed('kid-"xl"', 'kids "xl"', True),
)
FILTERS: list[Any] = [
    pytest.param(ProductFilter(), {"shoe-1", "bag-1", "sac-é", 'kid-"xl"'}, id="default-in-stock"),
    pytest.param(ProductFilter(in_stock_only=False), {seed.product_id for seed in FILTER_SEEDS}, id="everything"),
    pytest.param(ProductFilter(exclude_ids=frozenset({"shoe-1", "bag-1"})), {"sac-é", 'kid-"xl"'}, id="exclude"),
    pytest.param(ProductFilter(exclude_ids=frozenset({"sac-é"})), {"shoe-1", "bag-1", 'kid-"xl"'}, id="exclude-utf8"),
    pytest.param(ProductFilter(category="shoes"), {"shoe-1"}, id="category"),
    pytest.param(ProductFilter(in_stock_only=False, category="shoes"), {"shoe-1", "shoe-2"}, id="category-all"),
    pytest.param(ProductFilter(category="sacs-à-dos"), {"sac-é"}, id="category-utf8"),
    pytest.param(ProductFilter(category='kids "xl"'), {'kid-"xl"'}, id="category-with-quotes"),
    pytest.param(ProductFilter(category="hats"), set(), id="category-unknown"),
    pytest.param(
        ProductFilter(in_stock_only=False, exclude_ids=frozenset({"shoe-2"}), category="shoes"),
        {"shoe-1"},
        id="all-three",
    ),
]


def seed_filter_table(store: VectorStore, make_product: ProductFactory) -> None:
    """Store the products of the filter table."""
    store.upsert_products(
        [
            make_product(seed.product_id, vec(1, i), category=seed.category, in_stock=seed.in_stock)
            for i, seed in enumerate(FILTER_SEEDS)
        ]
    )


@pytest.mark.parametrize(("where", "expected"), FILTERS)
def test_search_respects_the_filter(
    store: VectorStore, make_product: ProductFactory, where: ProductFilter, expected: set[str]
) -> None:
    """Search returns exactly the products matching stock, exclusion and category constraints."""
    seed_filter_table(store, make_product)
    assert {hit.product.product_id for hit in store.search_products(vec(1), 10, where)} == expected


@pytest.mark.parametrize(("where", "expected"), FILTERS)
def test_browse_respects_the_filter(
    store: VectorStore, make_product: ProductFactory, where: ProductFilter, expected: set[str]
) -> None:
    """Browse returns exactly the products matching stock, exclusion and category constraints."""
    seed_filter_table(store, make_product)
    assert {row.product_id for row in store.browse_products(10, where)} == expected


def test_browse_respects_the_limit(store: VectorStore, make_product: ProductFactory) -> None:
    """Browse returns at most ``limit`` rows."""
    store.upsert_products([make_product(f"p{i}") for i in range(5)])
    rows = store.browse_products(3, ProductFilter())
    assert len(rows) == 3
    assert {row.product_id for row in rows} <= {f"p{i}" for i in range(5)}


def test_count_products_counts_stored_ids(store: VectorStore, make_product: ProductFactory) -> None:
    """count_products is the number of distinct stored ids, sold-out ones included."""
    assert store.count_products() == 0
    store.upsert_products([make_product(f"p{i}", in_stock=i % 2 == 0) for i in range(7)])
    assert store.count_products() == 7


FEATURES = {
    "categories": {"shoes": 1.0, "sacs-à-dos": 0.25},
    "brands": {},
    "purchased": ["p1", "p-é"],
    "recent_items": [],
    "events": 12,
}


@pytest.mark.parametrize("features", [FEATURES, {}], ids=["full", "empty"])
def test_users_round_trip_with_their_features(store: VectorStore, features: dict[str, Any]) -> None:
    """A stored user reads back with the same vectors, JSON features and update time."""
    user_id = f"u-round-trip-{len(features)}"
    row = UserRow(user_id, vec(1, 2), np.zeros(DIM, dtype=np.float32), features, updated_at=1_767_225_600_000)
    store.upsert_users([row])
    got = store.get_user(user_id)
    assert got is not None
    assert (got.user_id, got.features, got.updated_at) == (user_id, features, row.updated_at)
    np.testing.assert_allclose(got.short_vector, row.short_vector, rtol=1e-6)
    np.testing.assert_allclose(got.long_vector, row.long_vector, rtol=1e-6)


def test_upsert_users_keeps_the_last_row_of_an_id(store: VectorStore) -> None:
    """Within a batch and across batches, the last row written for a user id wins."""
    zero = np.zeros(DIM, dtype=np.float32)
    store.upsert_users(
        [UserRow("u-last", zero, zero, {"events": 1}, 1), UserRow("u-last", zero, zero, {"events": 2}, 2)]
    )
    got = store.get_user("u-last")
    assert got is not None
    assert got.features == {"events": 2}
    store.upsert_users([UserRow("u-last", vec(1), vec(1), {"events": 3}, 3)])
    got = store.get_user("u-last")
    assert got is not None
    assert (got.features, got.updated_at) == ({"events": 3}, 3)


def test_get_user_of_unknown_user_is_none(store: VectorStore) -> None:
    """An unknown (cold-start) user is None, not an error."""
    assert store.get_user("u-never-seen") is None


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], []),
        ([{"id": "a", "v": 1}, {"id": "b", "v": 2}], [{"id": "a", "v": 1}, {"id": "b", "v": 2}]),
        ([{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "a", "v": 3}], [{"id": "a", "v": 3}, {"id": "b", "v": 2}]),
    ],
    ids=["empty", "distinct", "duplicate"],
)
def test_last_per_key_keeps_the_last_row_in_first_seen_order(
    rows: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    """Deduplicating a batch keeps each key's last row at the position the key was first seen."""
    assert last_per_key(rows, "id") == expected


def test_last_per_key_reads_attributes_of_objects(make_product: ProductFactory) -> None:
    """Rows that are objects are keyed by attribute, as upserts of ProductRow batches need."""
    first, other, last = make_product("p1", title="a"), make_product("p2"), make_product("p1", title="b")
    kept = last_per_key([first, other, last], "product_id")
    assert len(kept) == 2
    assert kept[0] is last
    assert kept[1] is other


REF_MS = 1_767_225_600_000


def test_items_round_trip(store: VectorStore) -> None:
    """Item rows read back exactly as written, with non-ASCII and quoted ids and an empty neighbour set."""
    rows = [
        ItemRow("i-1", 1 / 3, {"i-2": 2.5, "sac-é": 1 / 7, 'kid-"xl"\\': 1e-300}, REF_MS),
        ItemRow("漢字-é", 0.0, {}, REF_MS + 1),
        ItemRow('kid-"xl"\\', 12_345.678_9, {"i-1": 0.5}, 0),
    ]
    store.upsert_items(rows)
    assert store.get_items([row.item_id for row in rows]) == {row.item_id: row for row in rows}


def test_get_items_returns_only_known_ids(store: VectorStore) -> None:
    """Unknown ids are simply absent from the answer, and a repeated id is answered once."""
    row = ItemRow("i-1", 1.0, {"i-2": 1.0}, REF_MS)
    store.upsert_items([row])
    assert store.get_items(["i-1", "nope", "i-1"]) == {"i-1": row}
    assert store.get_items(["nope"]) == {}


def test_get_items_without_neighbors_reads_the_counts_alone(store: VectorStore) -> None:
    """Rows asked for their counts only come with empty neighbours and the same popularity and time."""
    store.upsert_items([ItemRow("i-1", 3.0, {"i-2": 1.0, "i-3": 0.5}, REF_MS), ItemRow("i-2", 1.0, {}, REF_MS + 1)])
    assert store.get_items(["i-1", "i-2", "nope"], neighbors=False) == {
        "i-1": ItemRow("i-1", 3.0, {}, REF_MS),
        "i-2": ItemRow("i-2", 1.0, {}, REF_MS + 1),
    }
    assert store.get_items(["i-1"])["i-1"].neighbors == {"i-2": 1.0, "i-3": 0.5}  # what was stored is untouched


def test_duplicate_item_ids_in_one_batch_keep_the_last(store: VectorStore) -> None:
    """When one batch holds the same item id twice, the last row wins."""
    last = ItemRow("i-1", 2.0, {"i-3": 1.0}, REF_MS + 1)
    store.upsert_items([ItemRow("i-1", 1.0, {"i-2": 1.0}, REF_MS), ItemRow("i-2", 1.0, {}, REF_MS), last])
    assert store.get_items(["i-1", "i-2"]) == {"i-1": last, "i-2": ItemRow("i-2", 1.0, {}, REF_MS)}


def test_upsert_items_replaces_the_whole_row(store: VectorStore) -> None:
    """A later row of an id replaces the stored one, neighbours included: they are not merged."""
    store.upsert_items([ItemRow("i-1", 1.0, {"i-2": 1.0, "i-3": 2.0}, REF_MS)])
    newer = ItemRow("i-1", 0.5, {"i-4": 0.25}, REF_MS + 60_000)
    store.upsert_items([newer])
    assert store.get_items(["i-1"]) == {"i-1": newer}


def test_popular_lists_come_back_in_partition_order(store: VectorStore) -> None:
    """Popular lists read back in partition order, and the last list of a partition wins within and across batches."""
    store.upsert_popular(
        [
            PopularList(2, {"p-2": 3.0}, REF_MS),
            PopularList(0, {"p-0": 1.0, "sac-é": 0.5}, REF_MS),
            PopularList(1, {}, REF_MS),
            PopularList(2, {"p-2": 4.0, "p-0": 1 / 3}, REF_MS + 1),
        ]
    )
    newer = PopularList(0, {"p-9": 9.0}, REF_MS + 2)
    store.upsert_popular([newer])
    assert store.popular_lists() == [
        newer,
        PopularList(1, {}, REF_MS),
        PopularList(2, {"p-2": 4.0, "p-0": 1 / 3}, REF_MS + 1),
    ]


def test_item_rows_and_popular_lists_never_mix(store: VectorStore) -> None:
    """A product id that looks like a popular list's key stays an item row, and rewriting either keeps the other."""
    for generation in range(2):
        item = ItemRow("~popular/0", float(generation), {"i-1": 1.0}, REF_MS + generation)
        popular = PopularList(0, {"p-1": 2.0}, REF_MS + generation)
        store.upsert_items([item])
        store.upsert_popular([popular, PopularList(1, {"p-2": 1.0}, REF_MS)])
        assert store.get_items(["~popular/0", "~popular/1"]) == {"~popular/0": item}
        assert store.popular_lists() == [popular, PopularList(1, {"p-2": 1.0}, REF_MS)]


def test_callers_cannot_change_stored_scores(store: VectorStore) -> None:
    """Changing a dict after writing it, or one that was read back, leaves the stored row and list as written."""
    neighbors, items = {"i-2": 1.0}, {"p-1": 1.0}
    store.upsert_items([ItemRow("i-1", 1.0, neighbors, REF_MS)])
    store.upsert_popular([PopularList(0, items, REF_MS)])
    neighbors["i-3"] = 5.0
    items.clear()
    store.get_items(["i-1"])["i-1"].neighbors["i-4"] = 6.0
    store.popular_lists()[0].items["p-2"] = 7.0
    assert store.get_items(["i-1"]) == {"i-1": ItemRow("i-1", 1.0, {"i-2": 1.0}, REF_MS)}
    assert store.popular_lists() == [PopularList(0, {"p-1": 1.0}, REF_MS)]


GOOD_ITEM, GOOD_POPULAR = ItemRow("i-good", 1.0, {}, REF_MS), PopularList(0, {"p-1": 1.0}, REF_MS)
NON_FINITE_BATCHES: list[Any] = [
    pytest.param(
        lambda store: store.upsert_items([GOOD_ITEM, ItemRow("i-bad", math.nan, {}, REF_MS)]), id="nan-popularity"
    ),
    pytest.param(
        lambda store: store.upsert_items([GOOD_ITEM, ItemRow("i-bad", 1.0, {"i-1": math.inf}, REF_MS)]),
        id="infinite-neighbour",
    ),
    pytest.param(
        lambda store: store.upsert_popular([GOOD_POPULAR, PopularList(7, {"p-1": -math.inf}, REF_MS)]),
        id="infinite-popular-score",
    ),
]


@pytest.mark.parametrize("write", NON_FINITE_BATCHES)
def test_non_finite_scores_fail_the_whole_batch(store: VectorStore, write: Callable[[VectorStore], None]) -> None:
    """A NaN or infinite score raises a non-retriable StoreError and stores nothing of its batch."""
    with pytest.raises(StoreError) as raised:
        write(store)
    assert not raised.value.retriable
    assert store.get_items(["i-good", "i-bad"]) == {}
    assert store.popular_lists() == []
