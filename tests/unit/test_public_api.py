"""Each package exports a short ``__all__`` of names that exist (ruff's RUF022 keeps it sorted)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["streamrec", "streamrec.evaluation", "streams", "encoders", "ranker", "online_learning"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist(name: str) -> None:
    """``__all__`` has no duplicates, stays short, and each name resolves on the package."""
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert len(exported) == len(set(exported))
    assert len(exported) <= 20
    for item in exported:
        assert hasattr(package, item), f"{name}.{item}"
