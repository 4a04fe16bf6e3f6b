"""The profiles a worker saved recently, kept decoded, so a shopper's next batch skips reading the table.

A busy shopper's profile is about 27 KB of JSON (mostly the event ids kept
to recognise re-deliveries); reading it back from the table and rebuilding
it cost about 350 us per shopper per batch (``orjson.loads`` plus
``UserProfile.from_dict``), more than applying the events.

A profile here is always the one last saved to the table: the worker puts
profiles in only after their changelog write, and drops those of a batch
that failed before it (its events mutated them in place). Everything is
dropped when partitions are revoked: a table may be changed by recovery
once they come back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from prometheus_client import Counter

from streams.profiles import UserProfile

LOOKUPS = Counter("streamrec_profile_cache_lookups_total", "Profile lookups of the behavior agent", ["outcome"])


class HotProfiles:
    """A bounded LRU of decoded profiles by user id."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._profiles: OrderedDict[str, UserProfile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._profiles)

    def get(self, user_id: str) -> UserProfile | None:
        """The profile last saved for ``user_id``, if kept."""
        profile = self._profiles.get(user_id)
        if profile is None:
            LOOKUPS.labels("miss").inc()
            return None
        self._profiles.move_to_end(user_id)
        LOOKUPS.labels("hit").inc()
        return profile

    def keep(self, profiles: Iterable[UserProfile]) -> None:
        """Keep profiles just saved (the least recently used leave beyond ``size``)."""
        if self.size <= 0:
            return
        for profile in profiles:
            self._profiles[profile.user_id] = profile
            self._profiles.move_to_end(profile.user_id)
        while len(self._profiles) > self.size:
            self._profiles.popitem(last=False)

    def discard(self, user_ids: Iterable[str]) -> None:
        """Forget these users (their kept profiles may differ from the table now)."""
        for user_id in user_ids:
            self._profiles.pop(user_id, None)

    def clear(self) -> None:
        """Forget every profile."""
        self._profiles.clear()
