"""Settings of the stream side, read once at the edge (env prefix ``STREAMREC_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamSettings(BaseSettings):
    """Kafka connection, topic names and batching of the stream workers."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    app_id: str = Field("streamrec", description="consumer group and prefix of internal topics")
    topic_products: str = "streamrec.products"
    topic_searches: str = "streamrec.searches"
    topic_clicks: str = "streamrec.clicks"
    topic_purchases: str = "streamrec.purchases"
    topic_impressions: str = "streamrec.impressions"
    topic_model: str = "streamrec.model"
    topic_dlq: str = "streamrec.dlq"
    topic_partitions: int = Field(4, ge=1, description="partitions of topics streamrec creates")
    # A batch closes when it is full or when its oldest event has waited this
    # long: 50 ms keeps click-to-profile well inside the one-second budget
    # while letting a busy stream fill batches of hundreds.
    batch_max_events: int = Field(500, ge=1)
    batch_max_wait_s: float = Field(0.05, gt=0)
    product_batch_max: int = Field(64, ge=1, description="products embedded per encoder call")
    product_batch_wait_s: float = Field(0.2, gt=0)
    max_event_bytes: int = Field(64 * 1024, ge=256)
    profile_half_life_s: float = Field(7 * 24 * 3600.0, gt=0, description="half-life of category/brand affinity")
    lag_interval_s: float = Field(5.0, gt=0, description="how often consumer lag is measured")
    worker_web_port: int = Field(6066, description="port of the worker's /metrics and health endpoints")
    data_dir: str = Field(".streamrec", description="local state directory of a worker")

    def behavior_topics(self) -> dict[str, str]:
        """Topic name -> event kind for the shopper behavior topics."""
        return {self.topic_searches: "searches", self.topic_clicks: "clicks", self.topic_purchases: "purchases"}
