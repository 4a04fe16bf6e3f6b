"""Failpoints: named places where a fault test makes processing fail on purpose.

Off unless ``STREAMREC_FAILPOINTS`` is set, e.g.
``STREAMREC_FAILPOINTS="behavior.event=poison-*"``: the failpoint
``behavior.event`` raises :class:`~streamrec.errors.InjectedFault` for every
event whose key (the event id) matches the glob ``poison-*``. Several are
separated by ``;``. Fault tests use this to make a message that decodes
cleanly yet fails in processing, every time, like a real poison message.
"""

from __future__ import annotations

import fnmatch
import os

from streamrec.errors import ConfigError, InjectedFault

ENV = "STREAMREC_FAILPOINTS"
KNOWN = frozenset({"behavior.event", "catalog.event", "labels.event"})


def parse(spec: str) -> dict[str, str]:
    """``name=glob;name=glob`` to a mapping; unknown names are a configuration error."""
    points: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, pattern = part.partition("=")
        name = name.strip()
        if not sep or not pattern.strip() or name not in KNOWN:
            raise ConfigError(f"{ENV}: expected name=glob with name in {sorted(KNOWN)}", entry=part)
        points[name] = pattern.strip()
    return points


_ACTIVE: dict[str, str] = parse(os.environ.get(ENV, ""))


def arm(spec: str) -> None:
    """Replace the armed failpoints (``""`` disarms all)."""
    points = parse(spec)
    _ACTIVE.clear()
    _ACTIVE.update(points)


def check(name: str, key: str) -> None:
    """Raise :class:`InjectedFault` if failpoint ``name`` is armed for ``key``."""
    pattern = _ACTIVE.get(name)
    if pattern is not None and fnmatch.fnmatchcase(key, pattern):
        raise InjectedFault(f"failpoint {name} fired", key=key)
