"""Shared fakes for the unit tests: the hashing encoder, the memory store and a small catalog."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from encoders.text import HashingTextEncoder
from ranker.store import ProductRow, Vector

# Property tests judge correctness, not speed: on a loaded 2-core CI machine
# input generation and single examples can be slow without anything wrong.
settings.register_profile("streamrec", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamrec")

# (product_id, title, category, brand, in_stock)
CATALOG: tuple[tuple[str, str, str, str, bool], ...] = (
    ("shoe-red", "red running shoes", "shoes", "swift", True),
    ("shoe-blue", "blue running shoes", "shoes", "swift", True),
    ("shoe-trail", "trail running shoes", "shoes", "rocky", True),
    ("shoe-sold-out", "green running shoes", "shoes", "swift", False),
    ("belt", "leather belt", "accessories", "hide", True),
    ("wallet", "leather wallet with coin pocket", "accessories", "hide", True),
    ("bag", "leather travel bag", "bags", "nomad", True),
    ("backpack", "canvas hiking backpack", "bags", "nomad", True),
    ("jeans", "blue denim jeans", "clothing", "indigo", True),
    ("hat", "wool winter hat", "clothing", "north", True),
)

ProductFactory = Callable[..., ProductRow]


@pytest.fixture(scope="session")
def encoder() -> HashingTextEncoder:
    """The fast deterministic stand-in for the transformer encoder."""
    return HashingTextEncoder(dim=64)


@pytest.fixture(scope="session")
def embed(encoder: HashingTextEncoder) -> Callable[[str], Vector]:
    """Embed one text with the hashing encoder."""
    return lambda text: encoder.encode([text])[0]


@pytest.fixture(scope="session")
def make_product() -> ProductFactory:
    """Build a ProductRow with sensible defaults; keyword arguments override them."""

    def make(product_id: str, vector: Vector | None = None, **fields: object) -> ProductRow:
        defaults: dict[str, object] = {
            "title": f"product {product_id}",
            "category": "misc",
            "brand": "acme",
            "price": 9.5,
            "in_stock": True,
            "updated_at": 1_767_225_600_000,
            "model": "hashing-8",
        }
        unit = np.zeros(8, dtype=np.float32)
        unit[0] = 1.0
        return ProductRow(product_id=product_id, vector=unit if vector is None else vector, **{**defaults, **fields})

    return make


@pytest.fixture(scope="session")
def catalog_rows(embed: Callable[[str], Vector]) -> list[ProductRow]:
    """The small catalog above, embedded with the hashing encoder."""
    return [
        ProductRow(pid, embed(title), title, category, brand, 20.0 + i, stock, 1_767_225_600_000 + i, "hashing-64")
        for i, (pid, title, category, brand, stock) in enumerate(CATALOG)
    ]
