"""Prometheus metrics of the encoders, registered once per process.

``caller`` says whose latency a sample is: ``worker`` and ``api`` (as seen
by them, local or remote model alike) or ``service`` (forward passes of the
encoder service's merged batches).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ENCODE_SECONDS = Histogram(
    "streamrec_encoder_batch_seconds",
    "Time to embed one batch of texts",
    ["caller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ENCODE_BATCH_SIZE = Histogram(
    "streamrec_encoder_batch_texts", "Texts per encoder call", ["caller"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)

# The service.
REQUESTS = Counter(
    "streamrec_encoder_requests_total",
    "Requests to the encoder service by outcome (ok, bad_request, overloaded, unavailable, error)",
    ["outcome"],
)
QUEUE_TEXTS = Gauge("streamrec_encoder_queue_texts", "Texts waiting for a batch in the encoder service")
QUEUE_WAIT_SECONDS = Histogram(
    "streamrec_encoder_queue_wait_seconds",
    "Time a request waited before its batch started",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# The client.
CLIENT_ATTEMPTS = Counter(
    "streamrec_encoder_client_attempts_total",
    "HTTP attempts of the encoder client by outcome (ok, unavailable, timeout, connection, rejected, error)",
    ["outcome"],
)
BREAKER_STATE = Gauge("streamrec_encoder_breaker_state", "Encoder client circuit: 0 closed, 1 half-open, 2 open")
BREAKER_OPENED = Counter("streamrec_encoder_breaker_opened_total", "Times the encoder client circuit opened")

# The query cache.
CACHE_REQUESTS = Counter(
    "streamrec_encoder_cache_requests_total", "Texts looked up in the query cache by outcome", ["outcome"]
)
CACHE_ENTRIES = Gauge("streamrec_encoder_cache_entries", "Vectors held by the query cache")
