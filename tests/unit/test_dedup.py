"""The learner's window of recent example ids."""

from __future__ import annotations

import pytest

from online_learning.dedup import RecentIds


def test_add_says_whether_the_id_is_new() -> None:
    ids = RecentIds(3)
    assert ids.add("a")
    assert not ids.add("a")
    assert "a" in ids
    assert "b" not in ids


def test_the_oldest_id_is_forgotten_beyond_capacity() -> None:
    ids = RecentIds(2)
    for example_id in ("a", "b", "c"):
        ids.add(example_id)
    assert len(ids) == 2
    assert "a" not in ids
    assert "b" in ids
    assert "c" in ids


def test_bytes_round_trip_keeps_order_and_a_smaller_capacity_keeps_the_newest() -> None:
    ids = RecentIds(10)
    for example_id in ("a", "b", "c", "d"):
        ids.add(example_id)
    again = RecentIds(10, ids.to_bytes())
    assert [x in again for x in "abcd"] == [True] * 4
    assert again.to_bytes() == ids.to_bytes()
    assert len(ids.to_bytes()) == 4 * 8
    newest = RecentIds(2, ids.to_bytes())
    assert [x in newest for x in "abcd"] == [False, False, True, True]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentIds(0)
