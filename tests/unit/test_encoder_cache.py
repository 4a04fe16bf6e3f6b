"""The query cache: repeated texts are not re-encoded, it stays bounded, and only chosen callers use it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from prometheus_client import REGISTRY

from encoders.cache import CachedEmbedder
from encoders.runner import AsyncEncoder
from encoders.testing import FaultyEncoder
from encoders.text import HashingTextEncoder, Vectors

REFERENCE = HashingTextEncoder(dim=16)


@pytest.fixture
def inner() -> Iterator[tuple[AsyncEncoder, FaultyEncoder]]:
    """An in-process embedder whose forward passes are recorded."""
    faulty = FaultyEncoder(HashingTextEncoder(dim=16))
    runner = AsyncEncoder(faulty)
    yield runner, faulty
    runner.close()


def lookups(outcome: str) -> float:
    """Cache lookups counted with ``outcome`` so far."""
    return REGISTRY.get_sample_value("streamrec_encoder_cache_requests_total", {"outcome": outcome}) or 0.0


def encode(cache: CachedEmbedder, texts: Sequence[str], caller: str = "api") -> Vectors:
    """Run one encode call."""
    return asyncio.run(cache.encode(texts, caller))


def test_repeated_queries_are_not_re_encoded(inner: tuple[AsyncEncoder, FaultyEncoder]) -> None:
    """A text seen before is answered from the cache (a hit); only new texts reach the encoder (misses)."""
    runner, faulty = inner
    cache = CachedEmbedder(runner, max_entries=10)
    hits, misses = lookups("hit"), lookups("miss")
    first = encode(cache, ["red shoes", "blue bag"])
    mixed = encode(cache, ["blue bag", "green hat", "red shoes", "green hat"])
    np.testing.assert_array_equal(first, REFERENCE.encode(["red shoes", "blue bag"]))
    np.testing.assert_array_equal(mixed, REFERENCE.encode(["blue bag", "green hat", "red shoes", "green hat"]))
    assert faulty.batches == [["red shoes", "blue bag"], ["green hat"]]
    assert (lookups("hit") - hits, lookups("miss") - misses) == (3, 3)


def test_the_cache_is_a_bounded_lru(inner: tuple[AsyncEncoder, FaultyEncoder]) -> None:
    """Past max_entries the least recently used text is dropped; a recently used one stays."""
    runner, faulty = inner
    cache = CachedEmbedder(runner, max_entries=2)
    encode(cache, ["a"])
    encode(cache, ["b"])
    encode(cache, ["a"])  # a is now the most recent
    encode(cache, ["c"])  # evicts b
    assert len(cache) == 2
    encode(cache, ["a"])
    encode(cache, ["b"])
    assert faulty.batches == [["a"], ["b"], ["c"], ["b"]]


def test_other_callers_bypass_the_cache(inner: tuple[AsyncEncoder, FaultyEncoder]) -> None:
    """Calls from callers not listed (the worker's product texts) go straight through, uncounted and unstored."""
    runner, faulty = inner
    cache = CachedEmbedder(runner, max_entries=10, callers=("api",))
    hits, misses = lookups("hit"), lookups("miss")
    encode(cache, ["new product"], caller="worker")
    encode(cache, ["new product"], caller="worker")
    assert faulty.batches == [["new product"], ["new product"]]
    assert len(cache) == 0
    assert (lookups("hit"), lookups("miss")) == (hits, misses)


def test_results_do_not_share_memory_with_the_cache(inner: tuple[AsyncEncoder, FaultyEncoder]) -> None:
    """A caller that edits its vectors does not change what the cache answers next time."""
    runner, _ = inner
    cache = CachedEmbedder(runner, max_entries=10)
    encode(cache, ["red shoes"])[0] += 1.0
    np.testing.assert_array_equal(encode(cache, ["red shoes"]), REFERENCE.encode(["red shoes"]))


def test_size_zero_disables_the_cache(inner: tuple[AsyncEncoder, FaultyEncoder]) -> None:
    """max_entries=0 passes every call through; the wrapper still speaks the Embedder protocol."""
    runner, faulty = inner
    cache = CachedEmbedder(runner, max_entries=0)
    encode(cache, ["red shoes"])
    encode(cache, ["red shoes"])
    assert len(faulty.batches) == 2
    assert (cache.dim, cache.name) == (16, "hashing-16")
    assert encode(cache, [], caller="api").shape == (0, 16)
