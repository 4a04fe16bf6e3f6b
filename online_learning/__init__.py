"""Online learning: time-decayed statistics now; river ranking models next."""

from __future__ import annotations

from online_learning.decay import DecayedScores

__all__ = ["DecayedScores"]
