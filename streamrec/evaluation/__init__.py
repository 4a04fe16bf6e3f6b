"""``streamrec evaluate``: replay a dataset prequentially and report ranking quality per method.

``data`` loads a :class:`Dataset` (MovieLens-100k or a shop's CSV logs), ``metrics``
scores each ranking :class:`Request`, ``report`` writes the tables, JSON and chart.
"""

from __future__ import annotations

from streamrec.evaluation.data import CatalogItem, Dataset, DatasetError, Interaction, csv_events, movielens_100k
from streamrec.evaluation.metrics import Evaluation, MetricSet, Request
from streamrec.evaluation.report import ReportFiles, render_table, write_report

__all__ = [
    "CatalogItem",
    "Dataset",
    "DatasetError",
    "Evaluation",
    "Interaction",
    "MetricSet",
    "ReportFiles",
    "Request",
    "csv_events",
    "movielens_100k",
    "render_table",
    "write_report",
]
