"""Ranking: retrieval from the vector store, re-ranking and the HTTP API."""

from __future__ import annotations

from ranker.api import create_api
from ranker.service import Recommender, Results
from ranker.settings import RankerSettings
from ranker.store import Hit, MemoryStore, ProductFilter, ProductRow, UserRow, VectorStore

__all__ = [
    "Hit",
    "MemoryStore",
    "ProductFilter",
    "ProductRow",
    "RankerSettings",
    "Recommender",
    "Results",
    "UserRow",
    "VectorStore",
    "create_api",
]
