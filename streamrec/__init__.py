"""streamrec: real-time personalization for e-commerce search and recommendation."""

from __future__ import annotations

from streamrec.errors import (
    ConfigError,
    EncoderError,
    EncoderUnavailable,
    StoreError,
    StoreUnavailable,
    StreamrecError,
)

__all__ = [
    "ConfigError",
    "EncoderError",
    "EncoderUnavailable",
    "StoreError",
    "StoreUnavailable",
    "StreamrecError",
    "__version__",
]
__version__ = "0.1.0"
