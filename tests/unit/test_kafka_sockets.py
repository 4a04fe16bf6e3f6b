"""A refused kafka-python connection attempt closes its socket at once instead of leaving it to the collector."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.inet import KafkaNetSocket

from streamrec.kafka_sockets import close_sockets_of_failed_connects


class _Net:
    """Stands in for kafka-python's I/O kernel: waiting for writability is a short sleep."""

    async def wait_write(self, sock: socket.socket, timeout_at: float | None = None) -> None:
        time.sleep(0.05)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_refused_connect_closes_its_socket() -> None:
    """The patch is in place (applying it twice is harmless); a refused socket is closed when the error arrives."""
    assert close_sockets_of_failed_connects()
    assert close_sockets_of_failed_connects()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setblocking(False)
    with pytest.raises(KafkaConnectionError):
        asyncio.run(KafkaNetSocket().sock_connect(_Net(), sock, ("127.0.0.1", _closed_port())))
    assert sock.fileno() == -1, "the socket of the refused attempt is still open"


def test_a_successful_connect_keeps_its_socket_open() -> None:
    """Only failures close: a connected socket comes back open."""
    close_sockets_of_failed_connects()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        connected: Any = asyncio.run(KafkaNetSocket().sock_connect(_Net(), sock, server.getsockname()))
        try:
            assert connected is sock
            assert sock.fileno() != -1
        finally:
            sock.close()
