"""Model snapshots: what the learner publishes and API replicas load.

A snapshot carries the model, the item statistics, the offsets of the
examples it reflects and the ids of the latest ones, so a restarted learner
resumes exactly after them (nothing learned twice, nothing skipped).

The payload is a pickle: the model topic is internal, written only by
streamrec workers, and must be ACL-protected like the changelog topics;
never point ``topic_model`` at a topic others can write.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from online_learning.item_stats import ItemStats
from online_learning.model import RankingModel

SNAPSHOT_KEY = b"ranker"
FORMAT = 1
# Item statistics of a large catalog do not fit Kafka's 1 MB default (100k
# items pickle to about 3 MB), so the model topic, the learner's producer and
# the readers' fetches all allow this much, and snapshots are compressed.
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
PRODUCER_OPTIONS: dict[str, object] = {
    "acks": "all",
    "compression_type": "gzip",
    "max_request_size": MAX_SNAPSHOT_BYTES,
}
CONSUMER_OPTIONS: dict[str, object] = {
    "max_partition_fetch_bytes": MAX_SNAPSHOT_BYTES,
    "fetch_max_bytes": MAX_SNAPSHOT_BYTES,
}
TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_SNAPSHOT_BYTES)}


@dataclass
class Snapshot:
    """A published model with its provenance."""

    version: int
    created_ms: int
    model: RankingModel
    items: ItemStats
    offsets: dict[int, int] = field(default_factory=dict)  # examples partition -> last offset learned
    format: int = FORMAT
    # Digests of the most recent example ids (online_learning.dedup); a
    # class-level default, so snapshots pickled before it existed load too.
    recent_examples: bytes = b""

    def dumps(self) -> bytes:
        """Serialise for the model topic."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(payload: bytes) -> Snapshot | None:
        """Deserialise, or None for a payload of another format."""
        try:
            snapshot = pickle.loads(payload)  # internal topic only: see the module docstring
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError):
            return None  # a stray record on the topic: skip it, keep the last good model
        if not isinstance(snapshot, Snapshot) or snapshot.format != FORMAT:
            return None
        return snapshot
