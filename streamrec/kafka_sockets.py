"""Close the socket of a kafka-python connection attempt that fails.

kafka-python 3.0 creates a socket per connection attempt and, when the
broker refuses or the attempt times out, raises without closing it. The
file descriptor then lives until the garbage collector finds the socket:
a worker retrying against a broker that is down holds one descriptor per
attempt, and every collection prints a ``ResourceWarning``. Wrapping the
one method that connects closes the socket on any failure.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["close_sockets_of_failed_connects"]

_MARK = "_streamrec_closes_failed_sockets"


def close_sockets_of_failed_connects() -> bool:
    """Patch kafka-python's connect step once; return whether it is (now) patched.

    A kafka-python without the ``kafka.net.inet`` layer (older or newer
    releases with their own handling) is left as it is.
    """
    try:
        from kafka.net.inet import KafkaNetSocket
    except ImportError:
        return False
    connect: Callable[..., Awaitable[Any]] = KafkaNetSocket.sock_connect
    if getattr(connect, _MARK, False):
        return True

    @functools.wraps(connect)
    async def sock_connect(self: Any, net: Any, sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
        try:
            return await connect(self, net, sock, *args, **kwargs)
        except BaseException:
            sock.close()
            raise

    setattr(sock_connect, _MARK, True)
    KafkaNetSocket.sock_connect = sock_connect
    return True
