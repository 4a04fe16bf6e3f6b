"""One Kafka connection setting gives every client library the same security options."""

from __future__ import annotations

import ssl

import faust
import pytest

from streamrec.kafka_client import KafkaConnection
from streams.settings import StreamSettings


def test_plaintext_gives_bootstrap_servers_only() -> None:
    """Without security every client gets the server list and PLAINTEXT, and faust a kafka:// URL per host."""
    kafka = KafkaConnection(" a:9092, b:9092 ")
    assert kafka.aiokafka() == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    assert kafka.kafka_python() == {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    assert kafka.faust() == {"broker": "kafka://a:9092;kafka://b:9092"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_reaches_every_client(mechanism: str) -> None:
    """SASL_SSL passes the mechanism, user and password (and a TLS context) to aiokafka, kafka-python and faust."""
    kafka = KafkaConnection("k:9093", "SASL_SSL", mechanism, "svc", "secret")  # type: ignore[arg-type]
    aio = kafka.aiokafka()
    assert (aio["sasl_mechanism"], aio["sasl_plain_username"], aio["sasl_plain_password"]) == (
        mechanism,
        "svc",
        "secret",
    )
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    assert kafka.kafka_python()["sasl_mechanism"] == mechanism
    credentials = kafka.faust()["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc", "secret")


def test_tls_only_uses_ssl_credentials_and_no_sasl() -> None:
    """SSL without SASL gives a TLS context and no SASL options."""
    kafka = KafkaConnection("k:9093", "SSL")
    assert "sasl_mechanism" not in kafka.aiokafka()
    assert isinstance(kafka.faust()["broker_credentials"], faust.SSLCredentials)


def test_stream_settings_read_the_security_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """STREAMREC_KAFKA_* variables (as the Helm chart sets them) end up in the connection; the password stays secret."""
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "k:9093")
    monkeypatch.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STREAMREC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("STREAMREC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("STREAMREC_KAFKA_SASL_PASSWORD", "secret")
    settings = StreamSettings()
    assert "secret" not in repr(settings)
    kafka = settings.connection()
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_password) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "secret",
    )
    assert "ssl_context" not in kafka.aiokafka()
