"""The item side of the stream: deltas routed by product, folded into item rows and popular lists, and served."""

from __future__ import annotations

import asyncio
import copy
import json
import zlib
from collections.abc import Iterator, Sequence

import pytest
from aiokafka import errors as aiokafka_errors
from hypothesis import given
from hypothesis import strategies as st

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder
from online_learning.decay import DecayedScores
from ranker.service import Recommender
from ranker.settings import RankerSettings
from ranker.store import MemoryStore, ProductRow
from streams.covisitation import ItemDelta, ItemDeltas, ItemState, pair_weight
from streams.events import Click, Purchase, Rejection, Search, UserEvent
from streams.fakes import MemoryTopic
from streams.items import (
    FoldedItems,
    ItemUpdater,
    decode_deltas,
    encode_deltas,
    item_partition,
    popular_from_dict,
    popular_to_dict,
    send_deltas,
    split_by_partition,
)
from streams.profiles import EVENT_WEIGHT, UserProfile
from streams.updater import BehaviorUpdater, Folded

T0 = 1_767_225_600_000
HOUR_MS = 3_600_000
HALF_LIFE_MS = float(HOUR_MS)
PRODUCTS = ("A", "B", "C", "D", "old", "new", "x1", "x2", "x3")
IDS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
WEIGHTS = st.floats(0, 1e6, allow_nan=False)


class Pipeline:
    """Behavior updater, item topic and item updater over one memory store, with tables kept as JSON."""

    def __init__(self, store: MemoryStore, encoder: AsyncEncoder, partitions: int, popular_size: int = 200) -> None:
        self.store = store
        self.partitions = partitions
        self.behavior = BehaviorUpdater(store, encoder)
        self.items = ItemUpdater(store, HALF_LIFE_MS, popular_size)
        self.profiles: dict[str, UserProfile] = {}
        self.states: dict[str, str] = {}  # changelogged JSON, so nothing is shared with a live state
        self.rankings: dict[int, str] = {}
        self.offsets: dict[int, int] = {}  # item-topic offset of the last message per partition

    def load_profile(self, user_id: str) -> UserProfile:
        """A shopper's saved profile, or a new one."""
        saved = self.profiles.get(user_id)
        return copy.deepcopy(saved) if saved is not None else UserProfile(user_id, 1e12)

    def load_item(self, item_id: str) -> ItemState:
        """A product's saved state, or a new one."""
        saved = self.states.get(item_id)
        return ItemState.from_dict(json.loads(saved), HALF_LIFE_MS) if saved else ItemState.new(HALF_LIFE_MS)

    def load_ranking(self, partition: int) -> DecayedScores:
        """A partition's saved popular ranking, or an empty one."""
        saved = self.rankings.get(partition)
        return popular_from_dict(json.loads(saved) if saved else None, HALF_LIFE_MS)

    def behave(self, events: Sequence[UserEvent]) -> Folded:
        """Fold events into profiles and save them, as the behavior agent does."""
        folded = asyncio.run(self.behavior.fold(events, self.load_profile))
        self.profiles.update((user_id, copy.deepcopy(p)) for user_id, (p, _) in folded.profiles.items())
        return folded

    def run(self, events: Sequence[UserEvent]) -> FoldedItems:
        """Events through both agents and the item topic between them, then published to the store."""
        deltas = self.behave(events).items
        messages = []
        for partition, part in sorted(split_by_partition(deltas, self.partitions).items()):
            self.offsets[partition] = self.offsets.get(partition, -1) + 1
            messages.append((partition, self.offsets[partition], decoded(encode_deltas(part))))
        folded = self.items.fold(messages, self.load_item, self.load_ranking)
        self.states.update((item_id, json.dumps(s.to_dict())) for item_id, (s, _) in folded.states.items())
        self.rankings.update((p, json.dumps(popular_to_dict(r))) for p, r in folded.popular.items())
        asyncio.run(self.items.publish(folded))
        return folded

    def popular(self) -> dict[int, list[str]]:
        """The served popular lists: partition -> products, most popular first."""
        return {p.partition: list(p.items) for p in self.store.popular_lists()}


def decoded(raw: bytes) -> dict[str, ItemDelta]:
    """The deltas of one item-topic message, which must decode."""
    result = decode_deltas(raw)
    assert not isinstance(result, Rejection), result
    return result


def clicks(pairs: Sequence[tuple[str, str]], ts: int = T0, prefix: str = "e") -> list[UserEvent]:
    """Clicks of ``(user, product)`` pairs in order, one millisecond apart, with unique event ids."""
    return [
        Click(event_id=f"{prefix}{i}", ts=ts + i, schema_version=1, user_id=user, product_id=product)
        for i, (user, product) in enumerate(pairs)
    ]


@pytest.fixture
def async_encoder() -> Iterator[AsyncEncoder]:
    """A small deterministic encoder, closed after the test."""
    encoder = AsyncEncoder(HashingTextEncoder(8))
    yield encoder
    encoder.close()


@pytest.fixture
def pipeline(async_encoder: AsyncEncoder) -> Pipeline:
    """A one-partition pipeline over a store holding the test products."""
    return make_pipeline(async_encoder, partitions=1)


def make_pipeline(encoder: AsyncEncoder, partitions: int, popular_size: int = 200) -> Pipeline:
    """A pipeline over a fresh memory store holding ``PRODUCTS``."""
    store = MemoryStore()
    hashing = HashingTextEncoder(8)
    store.upsert_products(
        [ProductRow(p, hashing.encode([p])[0], p, "misc", "acme", 10.0, True, T0, "hashing-8") for p in PRODUCTS]
    )
    return Pipeline(store, encoder, partitions, popular_size)


@given(item_id=IDS, partitions=st.integers(1, 64))
def test_item_partition_is_stable_and_in_range(item_id: str, partitions: int) -> None:
    """A product always maps to the same partition, one of the topic's, by CRC-32 (not Python's salted hash)."""
    partition = item_partition(item_id, partitions)
    assert 0 <= partition < partitions
    assert partition == zlib.crc32(item_id.encode("utf-8")) % partitions


def test_item_partition_is_pinned_across_processes() -> None:
    """The mapping is a fixed function of the id: a restarted process routes a product where it went before."""
    assert [item_partition(p, 8) for p in ("p1", "shoe-red", "A")] == [
        zlib.crc32(p.encode()) % 8 for p in ("p1", "shoe-red", "A")
    ]
    assert item_partition("p1", 1) == 0


@given(ids=st.lists(IDS, max_size=12, unique=True), partitions=st.integers(1, 8))
def test_split_by_partition_sends_each_product_to_its_own_partition(ids: list[str], partitions: int) -> None:
    """Every delta lands in exactly one group, the partition owning its product."""
    deltas = ItemDeltas({item_id: ItemDelta(popularity=1.0) for item_id in ids})
    grouped = split_by_partition(deltas, partitions)
    assert sorted(item_id for part in grouped.values() for item_id in part) == sorted(ids)
    for partition, part in grouped.items():
        assert all(item_partition(item_id, partitions) == partition for item_id in part)


@given(
    st.dictionaries(
        IDS,
        st.builds(ItemDelta, WEIGHTS, st.dictionaries(IDS, WEIGHTS, max_size=3), st.integers(0, 2**53)),
        max_size=5,
    )
)
def test_deltas_round_trip_through_the_item_topic(deltas: dict[str, ItemDelta]) -> None:
    """What the behavior side encodes, the item side decodes unchanged."""
    assert decode_deltas(encode_deltas(deltas)) == deltas


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "invalid_json"),
        (b"", "invalid_json"),
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "invalid_fields"),
        (b"{}", "invalid_fields"),
        (b'{"items": []}', "invalid_fields"),
        (b'{"items": {"a": 1}}', "invalid_fields"),
        (b'{"items": {"a": {"co": [1]}}}', "invalid_fields"),
        (b'{"items": {"a": {"ts": "soon"}}}', "invalid_fields"),
        (b'{"items": {"a": {"ts": null}}}', "invalid_fields"),
    ],
    ids=[
        "tombstone",
        "empty",
        "not-json",
        "not-utf8",
        "array",
        "no-items",
        "items-not-an-object",
        "delta-not-an-object",
        "neighbours-not-an-object",
        "ts-not-a-number",
        "ts-null",
    ],
)
def test_bad_item_messages_are_rejections_with_a_reason(raw: bytes | None, reason: str) -> None:
    """A message that is not item deltas decodes to a rejection naming why, keeping the raw bytes; it never raises."""
    result = decode_deltas(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.raw) == (reason, raw or b"")
    assert result.detail.startswith("item deltas")


@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_never_raises(raw: bytes) -> None:
    """Any bytes on the item topic give deltas or a rejection."""
    assert isinstance(decode_deltas(raw), dict | Rejection)


def test_the_product_most_visited_with_another_is_its_strongest_neighbour(pipeline: Pipeline) -> None:
    """Shoppers go from A to B and from C to D: after the stream, B is A's strongest neighbour and D is C's."""
    pairs = [(f"ab{u}", p) for u in range(5) for p in ("A", "B")]
    pairs += [(f"cd{u}", p) for u in range(5) for p in ("C", "D")]
    pairs += [("mixed", "A"), ("mixed", "D")]  # one shopper crosses over: a weaker link
    pipeline.run(clicks(pairs))
    rows = pipeline.store.get_items(["A", "B", "C", "D"])
    assert max(rows["A"].neighbors, key=rows["A"].neighbors.__getitem__) == "B"
    assert max(rows["C"].neighbors, key=rows["C"].neighbors.__getitem__) == "D"
    assert rows["A"].neighbors["B"] > rows["A"].neighbors["D"]
    assert "C" not in rows["A"].neighbors
    assert rows["B"].neighbors["A"] == pytest.approx(rows["A"].neighbors["B"])
    assert [rows["A"].popularity, rows["B"].popularity] == pytest.approx([6.0, 5.0])


def test_counts_carry_over_between_batches(pipeline: Pipeline) -> None:
    """Two batches give the rows one batch of the same events would (within a half-life's rounding)."""
    pairs = [(f"u{u}", p) for u in range(3) for p in ("A", "B")]
    pipeline.run(clicks(pairs[:3], prefix="first"))
    pipeline.run(clicks(pairs[3:], ts=T0 + 3, prefix="second"))
    row = pipeline.store.get_items(["A"])["A"]
    assert row.popularity == pytest.approx(3.0)
    assert row.neighbors["B"] == pytest.approx(3.0 * pair_weight(1))


def test_a_purchase_counts_its_weight(pipeline: Pipeline) -> None:
    """A purchase adds the purchase weight to popularity and to its pairs, a click the click weight."""
    events: list[UserEvent] = [
        Click(event_id="c", ts=T0, schema_version=1, user_id="u", product_id="A"),
        Purchase(event_id="p", ts=T0 + 1, schema_version=1, user_id="u", product_id="B"),
    ]
    pipeline.run(events)
    rows = pipeline.store.get_items(["A", "B"])
    assert rows["A"].popularity == pytest.approx(EVENT_WEIGHT["click"])
    assert rows["B"].popularity == pytest.approx(EVENT_WEIGHT["purchase"])
    assert rows["A"].neighbors == pytest.approx({"B": EVENT_WEIGHT["purchase"] * pair_weight(1)})


@pytest.mark.parametrize(
    ("gap_half_lives", "expected"), [(0, ["old", "new"]), (3, ["new", "old"])], ids=["same-time", "three-half-lives"]
)
def test_the_popular_list_is_ordered_by_decayed_popularity(
    pipeline: Pipeline, gap_half_lives: int, expected: list[str]
) -> None:
    """Three clicks long ago weigh less than two clicks now: a product popular later overtakes one popular before."""
    pipeline.run(clicks([(f"u{i}", "old") for i in range(3)], prefix="then"))
    later = T0 + gap_half_lives * HOUR_MS
    pipeline.run(clicks([(f"v{i}", "new") for i in range(2)], ts=later, prefix="now"))
    (popular,) = pipeline.store.popular_lists()
    assert list(popular.items) == expected
    assert popular.items["old"] == pytest.approx(3.0 * 2.0**-gap_half_lives, rel=1e-6)
    assert popular.items["new"] == pytest.approx(2.0, rel=1e-6)


def test_the_popular_list_is_cut_to_its_size(async_encoder: AsyncEncoder) -> None:
    """A partition serves its ``popular_size`` most popular products only."""
    pipeline = make_pipeline(async_encoder, partitions=1, popular_size=2)
    pipeline.run(clicks([(f"u{i}-{p}", p) for p, n in (("x1", 1), ("x2", 3), ("x3", 2)) for i in range(n)]))
    assert pipeline.popular() == {0: ["x2", "x3"]}


def test_each_partition_lists_only_its_own_products(async_encoder: AsyncEncoder) -> None:
    """With several partitions, a product is counted in the popular list of the partition that owns it, no other."""
    partitions = 4
    pipeline = make_pipeline(async_encoder, partitions)
    pipeline.run(clicks([(f"u{i}", p) for i, p in enumerate(PRODUCTS)]))
    listed = pipeline.popular()
    assert sorted(item for items in listed.values() for item in items) == sorted(PRODUCTS)
    for partition, items in listed.items():
        assert all(item_partition(item, partitions) == partition for item in items)


def test_duplicates_add_nothing_to_item_counts(pipeline: Pipeline) -> None:
    """Events folded again (a replay after a crash) produce no item deltas and leave the served rows as they were."""
    events = clicks([("u", "A"), ("u", "B"), ("w", "B")])
    pipeline.run(events)
    before = pipeline.store.get_items(["A", "B"]), pipeline.store.popular_lists()
    replay = pipeline.behave(events)
    assert (replay.applied, bool(replay.items)) == ([False, False, False], False)
    folded = pipeline.run(events)
    assert (folded.states, folded.popular) == ({}, {})
    assert (pipeline.store.get_items(["A", "B"]), pipeline.store.popular_lists()) == before


def test_only_applied_clicks_and_purchases_make_item_deltas(pipeline: Pipeline) -> None:
    """In a batch mixing a replayed click, a search, a parked click and a new click, only the new click counts."""
    pipeline.run(clicks([("u", "A")], prefix="seen"))
    batch: list[UserEvent] = [
        *clicks([("u", "A")], prefix="seen"),
        Search(event_id="s", ts=T0 + 5, schema_version=1, user_id="u", query="shoes"),
        Click(event_id="parked", ts=T0 + 6, schema_version=1, user_id="u", product_id="not-in-store"),
        Click(event_id="new", ts=T0 + 7, schema_version=1, user_id="u", product_id="B"),
    ]
    folded = pipeline.behave(batch)
    assert folded.applied == [False, True, False, True]
    pair = EVENT_WEIGHT["click"] * pair_weight(1)
    assert folded.items.items == {
        "B": ItemDelta(popularity=EVENT_WEIGHT["click"], neighbors={"A": pair}, ts=T0 + 7),
        "A": ItemDelta(popularity=0.0, neighbors={"B": pair}, ts=T0 + 7),
    }


def test_the_ranker_serves_the_neighbour_the_stream_learned(pipeline: Pipeline, async_encoder: AsyncEncoder) -> None:
    """The rows the item side publishes are the rows the ranker reads: a new shopper who clicks A is shown B."""
    pipeline.run(clicks([(f"ab{u}", p) for u in range(5) for p in ("A", "B")] + [("cd", "C"), ("cd", "D")]))
    folded = pipeline.behave(clicks([("newcomer", "A")], ts=T0 + 100, prefix="late"))
    asyncio.run(pipeline.behavior.publish([profile for profile, _ in folded.profiles.values()]))
    settings = RankerSettings(candidate_sources=("covisit",), covisit_half_life_s=HALF_LIFE_MS / 1000)
    recommender = Recommender(pipeline.store, async_encoder, settings, clock=lambda: (T0 + 100) / 1000)
    results = asyncio.run(recommender.recommend("newcomer", 3))
    assert [item.product.product_id for item in results.items][:1] == ["B"]
    assert results.items[0].sources == ("covisit",)


def test_a_delta_message_the_broker_blinks_on_is_resent_alone() -> None:
    """A retriable failure on one partition's message resends that message only: each partition gets exactly one."""
    deltas = ItemDeltas()
    for item in ("p1", "p2", "p3", "p4", "p5", "p6"):
        deltas.add([], item, 1.0, ts=0)
    partitions = 4
    owners = {item_partition(item, partitions) for item in deltas.items}
    assert len(owners) > 1, "the test needs products on several partitions"
    topic = MemoryTopic("item-deltas", [aiokafka_errors.KafkaTimeoutError()])
    asyncio.run(send_deltas(topic, deltas, partitions))
    assert sorted(partition for partition, _, _ in topic.acked) == sorted(owners)
    assert topic.sends == len(owners) + 1
    delivered = {item for _, _, value in topic.acked for item in json.loads(value)["items"]}
    assert delivered == set(deltas.items)
