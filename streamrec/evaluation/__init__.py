"""``streamrec evaluate``: replay a dataset prequentially and report ranking quality per method.

``data`` loads a :class:`Dataset` (MovieLens-100k or a shop's CSV logs), ``replay``
drives streamrec (:class:`StreamrecReplay` in process, or ``live`` through Kafka) and
``baselines`` through it, ``metrics`` scores each ranking :class:`Request`, ``report``
writes the tables, JSON and chart, and ``command`` is ``streamrec evaluate``.
"""

from __future__ import annotations

from streamrec.evaluation.command import EvaluateOptions, evaluate
from streamrec.evaluation.data import CatalogItem, Dataset, DatasetError, Interaction, csv_events, movielens_100k
from streamrec.evaluation.metrics import Evaluation, MetricSet, Request
from streamrec.evaluation.replay import StreamrecReplay, System, replay
from streamrec.evaluation.report import ReportFiles, render_table, write_report

__all__ = [
    "CatalogItem",
    "Dataset",
    "DatasetError",
    "EvaluateOptions",
    "Evaluation",
    "Interaction",
    "MetricSet",
    "ReportFiles",
    "Request",
    "StreamrecReplay",
    "System",
    "csv_events",
    "evaluate",
    "movielens_100k",
    "render_table",
    "replay",
    "write_report",
]
