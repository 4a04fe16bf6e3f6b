"""The deadline index: what is due, per partition, earliest first, without scanning what is not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.deadlines import Deadlines


def test_nothing_is_due_before_its_deadline_and_everything_due_comes_earliest_first() -> None:
    """Keys come back once their deadline passed, ordered by deadline, and stay until moved."""
    due = Deadlines()
    due.set("late", 0, 300)
    due.set("early", 0, 100)
    due.set("middle", 0, 200)
    assert due.due({0}, 99) == []
    assert due.due({0}, 250) == ["early", "middle"]
    assert due.due({0}, 250) == ["early", "middle"], "due keys keep their deadline until the caller moves them"
    due.set("early", 0, 1000)
    due.discard("middle")
    assert due.due({0}, 500) == ["late"]


def test_only_the_asked_partitions_and_at_most_the_limit() -> None:
    """Keys of partitions not asked for are never returned; ``limit`` keeps the earliest across partitions."""
    due = Deadlines()
    due.set("a", 0, 30)
    due.set("b", 1, 10)
    due.set("c", 2, 20)
    assert due.due({0, 2}, 100) == ["c", "a"]
    assert due.due({0, 1, 2}, 100, limit=2) == ["b", "c"]


def test_rebuild_replaces_everything() -> None:
    """A rebuild forgets old keys and indexes the given ones (None: no deadline)."""
    due = Deadlines()
    due.set("old", 0, 1)
    due.rebuild([("x", 0, 5), ("y", 1, None), ("z", 1, 7)])
    assert (len(due), due.due({0, 1}, 10), due.get("old"), due.get("y")) == (2, ["x", "z"], None, None)


def test_moving_one_key_many_times_keeps_the_heap_small() -> None:
    """Stale entries are compacted away: the heap does not grow with the number of updates."""
    due = Deadlines()
    for deadline in range(10_000):
        due.set("k", 0, 10_000 - deadline)
    assert len(due._heaps[0]) <= 2 * 1 + 64 + 1
    assert due.due({0}, 1) == ["k"]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "discard", "due"]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 2),  # partition
        st.integers(0, 50),  # deadline or now
    ),
    max_size=60,
)


@given(ops=OPS, limit=st.none() | st.integers(1, 3))
def test_the_index_answers_like_a_scan_of_every_key(ops: list[tuple[str, str, int, int]], limit: int | None) -> None:
    """Against a plain dict scanned on every call: the same keys, in the same order, whatever the updates."""
    due, model = Deadlines(), {}
    for op, key, partition, value in ops:
        if op == "set":
            due.set(key, partition, value)
            model[key] = (partition, value)
        elif op == "discard":
            due.discard(key)
            model.pop(key, None)
        else:
            owned = {partition, (partition + 1) % 3}
            expected = sorted((d, k) for k, (p, d) in model.items() if p in owned and d <= value)
            assert due.due(owned, value, limit) == [k for _, k in expected][:limit]
    assert len(due) == len(model)
