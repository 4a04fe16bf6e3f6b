"""Fault injection around a text encoder, for tests and benchmarks.

``FaultyEncoder`` wraps any ``TextEncoder`` and can hold every forward pass
until released, slow it down, or fail it, while recording the batches it
saw. It runs in the encoder's worker thread, so it blocks like a real model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from encoders.text import TextEncoder, Vectors
from streamrec.errors import EncoderError


class FaultyEncoder:
    """A ``TextEncoder`` whose forward passes can be held, slowed or failed."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []
        self.released = threading.Event()
        self.released.set()
        self.delay_s = 0.0
        self.failing = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def hold(self) -> None:
        """Make forward passes wait until ``release``."""
        self.released.clear()

    def release(self) -> None:
        """Let held and later forward passes run."""
        self.released.set()

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(list(texts))
        # Bounded, so a test that forgets to release cannot hang the run.
        self.released.wait(timeout=30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.failing:
            raise EncoderError("injected forward-pass failure", texts=len(texts))
        return self.inner.encode(texts)
