"""Encoders: product and query texts to L2-normalised vectors, in-process or over HTTP."""

from __future__ import annotations

from encoders.batcher import DynamicBatcher, QueueFull
from encoders.breaker import CircuitBreaker
from encoders.cache import CachedEmbedder
from encoders.client import ModelInfo, RemoteEncoder
from encoders.registry import LoadedModel, load_model
from encoders.runner import AsyncEncoder, Embedder
from encoders.service import create_encoder_app
from encoders.settings import EncoderSettings, ModelSpec
from encoders.text import HashingTextEncoder, TextEncoder, TransformerTextEncoder, l2_normalize, resolve_model_dir

__all__ = [
    "AsyncEncoder",
    "CachedEmbedder",
    "CircuitBreaker",
    "DynamicBatcher",
    "Embedder",
    "EncoderSettings",
    "HashingTextEncoder",
    "LoadedModel",
    "ModelInfo",
    "ModelSpec",
    "QueueFull",
    "RemoteEncoder",
    "TextEncoder",
    "TransformerTextEncoder",
    "create_encoder_app",
    "l2_normalize",
    "load_model",
    "resolve_model_dir",
]
