"""Forward passes by token length: every text once, bounded size, bounded padding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from encoders.text import length_chunks


@given(lengths=st.lists(st.integers(min_value=1, max_value=128), max_size=200), max_texts=st.integers(1, 64))
def test_chunks_cover_every_text_once_within_size_and_padding(lengths: list[int], max_texts: int) -> None:
    """Each index appears in exactly one chunk of at most max_texts, and no chunk is more than half padding."""
    chunks = length_chunks(lengths, max_texts)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        assert 1 <= len(chunk) <= max_texts
        real = sum(lengths[i] for i in chunk)
        padded = len(chunk) * max(lengths[i] for i in chunk)
        assert padded <= 2 * real


def test_short_queries_do_not_share_a_pass_with_a_long_description() -> None:
    """Thirty short queries and one 128-token description go in separate passes; equal lengths fill a pass."""
    chunks = length_chunks([8] * 30 + [128], max_texts=64)
    assert chunks == [list(range(30)), [30]]
    assert length_chunks([20] * 64, max_texts=64) == [list(range(64))]
