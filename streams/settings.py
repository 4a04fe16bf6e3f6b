"""Settings of the stream side, read once at the edge (env prefix ``STREAMREC_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamrec.kafka_client import KafkaConnection, SaslMechanism, SecurityProtocol
from streams.events import parse_ts
from streams.time_policy import TimePolicy

# Local state of the worker's tables (see streams.table_store).
TableStore = Literal["rocksdb://", "memory://"]


class StreamSettings(BaseSettings):
    """Kafka connection, topic names and batching of the stream workers."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = Field("", description="CA bundle for TLS; empty uses the system store")
    app_id: str = Field("streamrec", description="consumer group and prefix of internal topics")
    topic_products: str = "streamrec.products"
    topic_searches: str = "streamrec.searches"
    topic_clicks: str = "streamrec.clicks"
    topic_purchases: str = "streamrec.purchases"
    topic_impressions: str = "streamrec.impressions"
    topic_model: str = "streamrec.model"
    topic_dlq: str = "streamrec.dlq"
    topic_item_deltas: str = Field(
        "streamrec.item-deltas", description="internal: co-visitation and popularity changes, partitioned by product"
    )
    topic_partitions: int = Field(4, ge=1, description="partitions of topics streamrec creates")
    # A batch closes when it is full or when its oldest event has waited this
    # long: 50 ms keeps click-to-profile well inside the one-second budget
    # while letting a busy stream fill batches of hundreds. Only a backlog
    # fills 2000 (below capacity the wait closes batches first), and there
    # a batch's fixed costs and a shopper's repeated writes are shared by
    # more events: 534 against 694 us of worker CPU per event at 500
    # (bench/stream.py, 40k events).
    batch_max_events: int = Field(2000, ge=1)
    batch_max_wait_s: float = Field(0.05, gt=0)
    # Co-visitation and popularity change the next request's candidates but
    # not the shopper's own profile, so their rows may trail by a second; a
    # second's messages folded together write each hot product once instead
    # of once per behavior batch.
    item_batch_max: int = Field(2000, ge=1, description="item-delta messages folded into one write of item rows")
    item_batch_wait_s: float = Field(
        1.0, gt=0, description="how long item deltas gather before products' co-visitation rows are written"
    )
    product_batch_max: int = Field(64, ge=1, description="products embedded per encoder call")
    product_batch_wait_s: float = Field(0.2, gt=0)
    product_cache_size: int = Field(
        50_000, ge=0, description="products a worker keeps for folding clicks (about 1.6 KB each at 384 dimensions)"
    )
    product_cache_ttl_s: float = Field(
        30.0, ge=0, description="how stale a cached product may be: a catalog change reaches profiles that late"
    )
    profile_cache_size: int = Field(
        10_000,
        ge=0,
        description="decoded profiles a worker keeps between batches (a busy shopper's is tens of KB); 0 turns it off",
    )
    max_event_bytes: int = Field(64 * 1024, ge=256)
    late_after_s: float = Field(60.0, ge=0, description="an event this much older than the user's newest is late")
    max_future_s: float = Field(300.0, ge=0, description="how far ahead of its arrival an event time may be")
    oldest_event_ts: str = Field("2000-01-01T00:00:00Z", description="events older than this are out of range")
    out_of_range_ts: Literal["clamp", "reject"] = Field(
        "clamp", description="clamp an out-of-range event time to its arrival time, or dead-letter the event"
    )
    park_max_s: float = Field(
        300.0,
        gt=0,
        description="how long a click or purchase waits for its product to be embedded before dead-lettering",
    )
    park_max_events: int = Field(10_000, ge=0, description="parked events a worker holds; more are dead-lettered")
    park_retry_s: float = Field(0.5, gt=0, description="how often parked events are retried")
    dedup_ttl_s: float = Field(
        86_400.0, gt=0, description="how long (in the shopper's event time) an event id is remembered to skip a replay"
    )
    profile_half_life_s: float = Field(7 * 24 * 3600.0, gt=0, description="half-life of category/brand affinity")
    covisit_half_life_s: float = Field(
        14 * 24 * 3600.0, gt=0, description="half-life of product popularity and co-visitation counts (event time)"
    )
    # A worker that dies without leaving the group (kill -9, a lost node)
    # holds its partitions until this expires; faust's 60 s default doubles
    # the outage for no benefit on a healthy network.
    session_timeout_s: float = Field(30.0, ge=6, description="consumer group session timeout")
    lag_interval_s: float = Field(5.0, gt=0, description="how often consumer lag is measured")
    worker_web_port: int = Field(6066, description="port of the worker's /metrics and health endpoints")
    data_dir: str = Field(
        ".streamrec", description="local state directory of a worker (one per worker process; tables under it)"
    )
    table_store: TableStore = Field(
        "rocksdb://",
        description=(
            "where tables keep local state: rocksdb:// persists it under the data directory, so a restart reads"
            " only the changelog records after what it holds; memory:// replays every changelog on each start"
        ),
    )

    def connection(self) -> KafkaConnection:
        """How every client reaches the cluster."""
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password.get_secret_value(),
            ssl_cafile=self.kafka_ssl_cafile,
        )

    def time_policy(self) -> TimePolicy:
        """Bounds on event time and what to do outside them."""
        return TimePolicy(
            max_future_ms=int(self.max_future_s * 1000),
            oldest_ms=parse_ts(self.oldest_event_ts),
            action=self.out_of_range_ts,
        )

    def input_topics(self) -> tuple[str, ...]:
        """Every topic the worker group consumes and commits offsets of, sorted (changelogs are read apart)."""
        topics = {self.topic_products, self.topic_impressions, self.topic_item_deltas, *self.behavior_topics()}
        return tuple(sorted(topics))

    def behavior_topics(self) -> dict[str, str]:
        """Topic name -> event kind for the shopper behavior topics."""
        return {self.topic_searches: "searches", self.topic_clicks: "clicks", self.topic_purchases: "purchases"}
