"""The awaitable encoder facade: same vectors as the blocking encoder, timed per caller."""

from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import REGISTRY

from encoders.runner import AsyncEncoder
from encoders.text import HashingTextEncoder


def test_async_encoder_returns_the_blocking_encoders_vectors() -> None:
    """Awaiting encode() gives exactly what the wrapped encoder gives, and records the batch size."""
    encoder = HashingTextEncoder(dim=16)
    runner = AsyncEncoder(encoder)
    labels = {"caller": "unit-test"}
    before = REGISTRY.get_sample_value("streamrec_encoder_batch_texts_sum", labels) or 0.0
    try:
        vectors = asyncio.run(runner.encode(("red shoes", "blue bag"), caller="unit-test"))
    finally:
        runner.close()
    np.testing.assert_array_equal(vectors, encoder.encode(["red shoes", "blue bag"]))
    assert runner.dim == 16
    assert REGISTRY.get_sample_value("streamrec_encoder_batch_texts_sum", labels) == before + 2
