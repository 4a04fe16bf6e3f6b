"""The encoder service's wire format, shared by the service and its client.

``POST /v1/embed`` takes ``{"texts": [...], "encoding": "float" | "base64"}``
and answers ``{"model", "version", "dim", "count", "encoding", "vectors"}``.
``float`` vectors are JSON lists (for people and curl); ``base64`` is the
little-endian float32 matrix, row-major, which is exact and costs the event
loop far less than printing and parsing thousands of floats.

A bad request is a value, not an exception: ``parse_embed_request`` returns
the request or an ``Invalid`` naming the field.

>>> parse_embed_request({"texts": ["red shoes"]}, max_texts=8, max_chars=64)
EmbedRequest(texts=['red shoes'], encoding='float')
>>> parse_embed_request({"texts": []}, max_texts=8, max_chars=64)
Invalid(field='texts', detail='must hold at least one text')
>>> vectors = np.eye(2, dtype=np.float32)
>>> bool((decode_vectors(encode_vectors(vectors, "base64"), 2, 2) == vectors).all())
True
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from encoders.text import Vectors

Encoding = Literal["float", "base64"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
_WIRE_DTYPE = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """A valid embedding request."""

    texts: list[str]
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a request was refused, naming the field."""

    field: str
    detail: str


def parse_embed_request(body: object, max_texts: int, max_chars: int) -> EmbedRequest | Invalid:
    """Check a decoded JSON body against the limits of the service."""
    if not isinstance(body, dict):
        return Invalid("body", "must be a JSON object")
    texts = body.get("texts")
    if not isinstance(texts, list):
        return Invalid("texts", "must be a list of strings")
    if not texts:
        return Invalid("texts", "must hold at least one text")
    if len(texts) > max_texts:
        return Invalid("texts", f"holds {len(texts)} texts; at most {max_texts} per request")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            return Invalid(f"texts[{index}]", "must be a string")
        if not text.strip():
            return Invalid(f"texts[{index}]", "is empty")
        if len(text) > max_chars:
            return Invalid(f"texts[{index}]", f"is longer than {max_chars} characters")
    encoding = body.get("encoding", "float")
    if encoding not in ENCODINGS:
        return Invalid("encoding", f"must be one of {', '.join(ENCODINGS)}")
    return EmbedRequest(texts, encoding)


def encode_vectors(vectors: Vectors, encoding: Encoding) -> Any:
    """The ``vectors`` field of a response."""
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vectors, dtype=_WIRE_DTYPE).tobytes()).decode("ascii")
    return vectors.tolist()


def decode_vectors(field: object, count: int, dim: int) -> Vectors | None:
    """The (count, dim) matrix in a response's ``vectors`` field, or None if it is malformed."""
    try:
        if isinstance(field, str):
            flat = np.frombuffer(base64.b64decode(field, validate=True), dtype=_WIRE_DTYPE)
        elif isinstance(field, list):
            flat = np.asarray(field, dtype=np.float32).reshape(-1)
        else:
            return None
    except (binascii.Error, ValueError, TypeError):
        return None
    if flat.size != count * dim or not np.isfinite(flat).all():
        return None
    matrix: Vectors = flat.astype(np.float32).reshape(count, dim)
    return matrix
