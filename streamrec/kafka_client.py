"""How every streamrec client reaches Kafka: bootstrap servers, TLS and SASL.

One value, built once from the stream settings, gives the options of each
client library in its own spelling (aiokafka, kafka-python, faust), so a
secured cluster is configured in one place.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal

from streamrec.kafka_sockets import close_sockets_of_failed_connects

# Every process that builds Kafka clients imports this module first.
close_sockets_of_failed_connects()

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and security of a Kafka cluster."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""

    @property
    def servers(self) -> list[str]:
        """Bootstrap servers as a list."""
        return [host.strip() for host in self.bootstrap.split(",") if host.strip()]

    @property
    def uses_sasl(self) -> bool:
        """Whether the cluster wants SASL authentication."""
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting ``ssl_cafile`` (or the system store), or None without TLS."""
        if not self.uses_tls:
            return None
        return ssl.create_default_context(cafile=self.ssl_cafile or None)

    def _client_options(self) -> dict[str, Any]:
        """What aiokafka and kafka-python spell alike: servers, protocol, SASL."""
        options: dict[str, Any] = {"bootstrap_servers": self.servers, "security_protocol": self.security_protocol}
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        options = self._client_options()
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (admin, producer, consumer)."""
        options = self._client_options()
        if self.uses_tls and self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def faust(self) -> dict[str, Any]:
        """Keyword arguments for ``faust.App``: broker URL and credentials."""
        import faust

        scheme = "kafka"
        broker = ";".join(f"{scheme}://{host}" for host in self.servers)
        options: dict[str, Any] = {"broker": broker}
        if self.uses_sasl:
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        elif self.uses_tls:
            options["broker_credentials"] = faust.SSLCredentials(self.ssl_context())
        return options
