"""Settings of retrieval, ranking and the HTTP API (env prefix ``STREAMREC_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CandidateSource = Literal["content", "covisit", "popular", "category"]


class RankerSettings(BaseSettings):
    """Milvus connection, collections, blend weights and the API listener."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="ignore")

    milvus_uri: str = Field(
        ".streamrec/milvus.db", description="a local file path for Milvus Lite, or http(s)://host:port of a server"
    )
    milvus_token: str = Field("", description="token for a Milvus server (user:password or API key)")
    # Explicit, short timeouts: pymilvus would otherwise retry for a long time
    # and a stream worker would stall silently behind it.
    milvus_timeout_s: float = Field(10.0, gt=0)
    milvus_index: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] = Field(
        "FLAT", description="index type of the products collection; FLAT/IVF_FLAT work on Milvus Lite"
    )
    products_collection: str = "products"
    users_collection: str = "users"
    items_collection: str = "items"  # item rows (popularity, co-visited neighbours) and popular lists
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    default_k: int = Field(10, ge=1, le=100)
    max_k: int = Field(100, ge=1, le=1000)
    candidate_factor: int = Field(5, ge=1, description="candidates retrieved per result before re-ranking")
    # The fixed blend's defaults were fitted (a listwise logistic fit, then
    # rounded) on the first 30% of the MovieLens-100k replay only; see
    # docs/evaluation/README.md. Similarity keeps weight 1.
    affinity_weight: float = Field(0.25, ge=0, description="weight of the user's category affinity in the blend")
    brand_weight: float = Field(0.1, ge=0)
    candidate_sources: tuple[CandidateSource, ...] = Field(
        ("content", "covisit", "popular", "category"),
        description="sources of recommendation candidates (JSON list): content, covisit, popular, category",
    )
    covisit_weight: float = Field(
        1.25, ge=0, description="weight of co-visitation in the fixed blend (before a learned model serves)"
    )
    covisit_cosine_weight: float = Field(
        4.8, ge=0, description="weight of cosine-normalised co-visitation in the fixed blend"
    )
    popularity_weight: float = Field(0.4, ge=0, description="weight of log popularity in the fixed blend")
    # The blend's weights were fitted on recommendations (MovieLens, no
    # queries); in search and similar-product lists relevance to the query or
    # product comes first, and 0.4 let popular products of other categories in.
    search_popularity_weight: float = Field(
        0.1, ge=0, description="weight of log popularity when ranking search results and similar products"
    )
    model_pool_factor: int = Field(
        1,
        ge=1,
        description="the learned model re-ranks only the fixed blend's top k * this: the kind of list it learned from",
    )
    covisit_half_life_s: float = Field(
        14 * 24 * 3600.0, gt=0, description="half-life of product popularity and co-visitation counts (event time)"
    )
    short_term_weight: float = Field(0.7, ge=0, le=1, description="share of the short-term vector in the user vector")
    max_query_chars: int = Field(512, ge=1)
