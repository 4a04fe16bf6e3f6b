"""Encoders: product and query texts to L2-normalised vectors."""

from __future__ import annotations

from encoders.runner import AsyncEncoder, Embedder
from encoders.settings import EncoderSettings
from encoders.text import HashingTextEncoder, TextEncoder, TransformerTextEncoder, l2_normalize, resolve_model_dir

__all__ = [
    "AsyncEncoder",
    "Embedder",
    "EncoderSettings",
    "HashingTextEncoder",
    "TextEncoder",
    "TransformerTextEncoder",
    "l2_normalize",
    "resolve_model_dir",
]
