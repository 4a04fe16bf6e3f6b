"""Settings of the stream side, read once at the edge (env prefix ``STREAMREC_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamrec.kafka_client import KafkaConnection, SaslMechanism, SecurityProtocol


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

    def behavior_topics(self) -> dict[str, str]:
        """Topic name -> event kind for the shopper behavior topics."""
        return {self.topic_searches: "searches", self.topic_clicks: "clicks", self.topic_purchases: "purchases"}
