"""Commit and recovery timing of a stream worker, from faust's sensor hooks.

``streamrec_last_commit_timestamp_seconds`` gives the age of the last offset
commit (``time() - value`` in PromQL); ``streamrec_recovery_seconds`` how long
each rebalance took until the tables were recovered and processing resumed.
"""

from __future__ import annotations

import time
from typing import Any

import faust
from faust.sensors import Sensor
from faust.types import AppT, ConsumerT
from prometheus_client import Counter, Gauge, Histogram

LAST_COMMIT = Gauge("streamrec_last_commit_timestamp_seconds", "Unix time of the worker's last offset commit")
COMMITS = Counter("streamrec_commits_total", "Offset commits completed by the worker")
REBALANCES = Counter("streamrec_rebalances_total", "Consumer group rebalances this worker took part in")
RECOVERY_SECONDS = Histogram(
    "streamrec_recovery_seconds",
    "From a rebalance starting to its tables recovered from changelogs and processing resumed",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


class WorkerSensor(Sensor):
    """Feeds the commit and recovery metrics; registered on the app by :func:`install`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rebalance_started: float | None = None

    def on_commit_completed(self, consumer: ConsumerT, state: Any) -> None:
        """An offset commit finished."""
        COMMITS.inc()
        LAST_COMMIT.set_to_current_time()

    def on_rebalance_start(self, app: AppT) -> dict[str, float]:
        """A rebalance began: processing stops until recovery ends."""
        REBALANCES.inc()
        self.rebalance_started = time.monotonic()
        return {"time_start": self.rebalance_started}

    async def on_rebalance_complete(self, sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        """Tables recovered; processing resumes."""
        if self.rebalance_started is not None:
            RECOVERY_SECONDS.observe(time.monotonic() - self.rebalance_started)
            self.rebalance_started = None


def install(app: faust.App) -> WorkerSensor:
    """Register a :class:`WorkerSensor` on ``app``."""
    sensor = WorkerSensor()
    app.sensors.add(sensor)
    app.on_rebalance_complete.connect(sensor.on_rebalance_complete)
    return sensor
