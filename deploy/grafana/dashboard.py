"""Build the streamrec Grafana dashboard, ``streamrec.json``, from code.

Edit this file, then run ``python deploy/grafana/dashboard.py`` and commit both.
``--check`` exits 1 when the committed JSON differs from what this file builds;
tests/ops/test_dashboard.py makes the same comparison and parses every query.

Every query filters on the ``namespace`` and ``instance`` template variables;
``namespace`` is empty outside Kubernetes and the "All" value (``.*``) matches
that too. The dashboard reads only metrics the code exports, plus ``up``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Panel = dict[str, Any]

OUTPUT = Path(__file__).with_name("streamrec.json")
UID = "streamrec-overview"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOBS = 'job=~"streamrec-.*"'
FILTER = 'namespace=~"$namespace", instance=~"$instance"'
PUBLIC = 'endpoint=~"/v1/.*"'  # the API's own endpoints, without health probes and /metrics
SERVER_ERROR = 'status=~"5.."'
PROCESSED = 'outcome="processed"'
NOT_PROCESSED = 'outcome!="processed"'
FAILED = 'outcome="error"'
ENCODER_JOB = 'job="streamrec-encoder"'
FRESHNESS_BUDGET_S = 1.0  # the design's promise, also the alert threshold
API_P99_BUDGET_S = 0.25  # the StreamrecApiLatencyP99High threshold
GRID_WIDTH = 24


def selector(metric: str, *matchers: str) -> str:
    """``metric{matchers..., namespace=~..., instance=~...}``."""
    return metric + "{" + ", ".join((*matchers, FILTER)) + "}"


def rate(metric: str, *matchers: str) -> str:
    """Per-second rate over Grafana's rate interval."""
    return f"rate({selector(metric, *matchers)}[$__rate_interval])"


def quantile(q: float, histogram: str, by: Sequence[str] = (), *matchers: str) -> str:
    """``histogram_quantile`` of a histogram's buckets, aggregated by ``by``."""
    labels = ", ".join((*by, "le"))
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket', *matchers)}))"


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    """One Prometheus query of a panel."""
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True, "refId": ref}


def _targets(queries: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def _thresholds(red_from: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return {"mode": "absolute", "steps": steps}


def timeseries(
    title: str,
    description: str,
    queries: Sequence[tuple[str, str]],
    unit: str,
    *,
    budget: float | None = None,
    stack: bool = False,
) -> Panel:
    """A time-series panel; ``budget`` draws a red threshold line."""
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "fillOpacity": 20 if stack else 0,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "line" if budget is not None else "off"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "custom": custom, "thresholds": _thresholds(budget)},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, description: str, expr: str, unit: str, *, red_from: float | None = None) -> Panel:
    """A single-number panel, red from ``red_from`` on."""
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets([(expr, title)]),
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": _thresholds(red_from)}, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
    }


def heatmap(title: str, description: str, histogram: str) -> Panel:
    """Bucket counts of a histogram over time."""
    expr = f"sum by (le) (increase({selector(histogram + '_bucket')}[$__rate_interval]))"
    panel_target = target(expr, "{{le}}", "A") | {"format": "heatmap"}
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [panel_target],
        "options": {
            "calculate": False,
            "yAxis": {"unit": "s"},
            "color": {"mode": "scheme", "scheme": "Oranges"},
            "cellGap": 1,
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


def overview() -> list[tuple[Panel, int]]:
    """Headline numbers."""
    return [
        (
            stat(
                "Events/s",
                "Behavior and catalog events processed per second.",
                f"sum({rate('streamrec_events_total', PROCESSED)})",
                "ops",
            ),
            4,
        ),
        (
            stat(
                "Freshness p99",
                "Event time to the shopper's profile being visible in Milvus (budget 1 s).",
                quantile(0.99, "streamrec_profile_freshness_seconds"),
                "s",
                red_from=FRESHNESS_BUDGET_S,
            ),
            4,
        ),
        (
            stat(
                "API p99",
                "p99 latency over all /v1 endpoints (budget 250 ms).",
                quantile(0.99, "streamrec_api_request_seconds", (), PUBLIC),
                "s",
                red_from=API_P99_BUDGET_S,
            ),
            4,
        ),
        (
            stat(
                "API 5xx share",
                "Share of /v1 requests answered with a 5xx status.",
                f"sum({rate('streamrec_api_request_seconds_count', PUBLIC, SERVER_ERROR)})"
                f" / sum({rate('streamrec_api_request_seconds_count', PUBLIC)})",
                "percentunit",
                red_from=0.02,
            ),
            4,
        ),
        (
            stat(
                "Dead letters/s",
                "Messages sent to the dead-letter topic per second.",
                f"sum({rate('streamrec_dead_letters_total')})",
                "ops",
                red_from=0.1,
            ),
            4,
        ),
        (
            stat(
                "Targets down",
                "streamrec scrape targets Prometheus cannot reach.",
                f"count({selector('up', JOBS)} == 0) or vector(0)",
                "none",
                red_from=1,
            ),
            4,
        ),
    ]


def stream() -> list[tuple[Panel, int]]:
    """Worker throughput, batch time, and the consumer-lag gap."""
    return [
        (
            timeseries(
                "Events handled by agent and outcome",
                "streamrec_events_total: processed, duplicate (dedup window) and dead_lettered, per topic.",
                [(f"sum by (topic, outcome) ({rate('streamrec_events_total')})", "{{topic}} {{outcome}}")],
                "ops",
                stack=True,
            ),
            9,
        ),
        (
            timeseries(
                "Batch processing time",
                "Time for one batch of events through an agent (decode, encode, fold, upsert).",
                [
                    (quantile(0.5, "streamrec_batch_seconds", ("agent",)), "p50 {{agent}}"),
                    (quantile(0.99, "streamrec_batch_seconds", ("agent",)), "p99 {{agent}}"),
                ],
                "s",
            ),
            9,
        ),
        (
            timeseries(
                "Consumer lag by topic",
                "streamrec_consumer_lag_messages: end offset minus the group's committed offset, per partition, "
                "summed by topic.",
                [(f"sum by (topic) ({selector('streamrec_consumer_lag_messages')})", "{{topic}}")],
                "short",
            ),
            6,
        ),
    ]


def model() -> list[tuple[Panel, int]]:
    """The online ranking model: quality, version and age, examples."""
    return [
        (
            timeseries(
                "Progressive validation",
                "Log loss and ROC AUC of the learner's model, each example scored before it is learned.",
                [
                    (f"max({selector('streamrec_model_progressive_auc')})", "AUC"),
                    (f"max({selector('streamrec_model_progressive_logloss')})", "log loss"),
                ],
                "short",
            ),
            8,
        ),
        (
            timeseries(
                "Model served by the API",
                "Version of the snapshot each API instance ranks with, and its age (0: fixed blend).",
                [
                    (f"max by (instance) ({selector('streamrec_model_version')})", "version {{instance}}"),
                    (f"max by (instance) ({selector('streamrec_model_age_seconds')})", "age s {{instance}}"),
                ],
                "short",
            ),
            8,
        ),
        (
            timeseries(
                "Labeled examples and snapshots",
                "Examples written by the label join (by label) and snapshots by outcome.",
                [
                    (f"sum by (label) ({rate('streamrec_label_examples_total')})", "examples {{label}}"),
                    (f"sum by (outcome) ({rate('streamrec_model_snapshots_total')})", "snapshots {{outcome}}"),
                ],
                "ops",
            ),
            8,
        ),
    ]


def freshness() -> list[tuple[Panel, int]]:
    """Event time to profile visible."""
    histogram = "streamrec_profile_freshness_seconds"
    return [
        (
            timeseries(
                "Profile freshness",
                "Event time to the shopper's profile being visible in Milvus. The red line is the 1 s budget.",
                [(quantile(q, histogram), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)],
                "s",
                budget=FRESHNESS_BUDGET_S,
            ),
            16,
        ),
        (heatmap("Freshness distribution", "Profiles made visible per freshness bucket.", histogram), 8),
    ]


def api() -> list[tuple[Panel, int]]:
    """Request rate, latency and errors of the HTTP API."""
    histogram = "streamrec_api_request_seconds"
    count = histogram + "_count"
    return [
        (
            timeseries(
                "Requests by endpoint and status",
                "Requests per second, including health probes and /metrics.",
                [(f"sum by (endpoint, status) ({rate(count)})", "{{endpoint}} {{status}}")],
                "reqps",
                stack=True,
            ),
            8,
        ),
        (
            timeseries(
                "Latency by endpoint",
                "p50 and p99 of the /v1 endpoints. The red line is the 250 ms alert threshold.",
                [
                    (quantile(0.5, histogram, ("endpoint",), PUBLIC), "p50 {{endpoint}}"),
                    (quantile(0.99, histogram, ("endpoint",), PUBLIC), "p99 {{endpoint}}"),
                ],
                "s",
                budget=API_P99_BUDGET_S,
            ),
            8,
        ),
        (
            timeseries(
                "5xx share by endpoint",
                "Share of requests answered 5xx; 503 means Milvus is unavailable.",
                [
                    (
                        f"sum by (endpoint) ({rate(count, PUBLIC, SERVER_ERROR)})"
                        f" / sum by (endpoint) ({rate(count, PUBLIC)})",
                        "{{endpoint}}",
                    )
                ],
                "percentunit",
                budget=0.02,
            ),
            8,
        ),
    ]


def encoder() -> list[tuple[Panel, int]]:
    """Batch sizes, latency and availability of the encoder."""
    size = "streamrec_encoder_batch_texts"
    seconds = "streamrec_encoder_batch_seconds"
    return [
        (
            timeseries(
                "Encoder batch size",
                "Texts per encoder call by caller (worker: products and queries; api: search queries).",
                [
                    (
                        f"sum by (caller) ({rate(size + '_sum')}) / sum by (caller) ({rate(size + '_count')})",
                        "mean {{caller}}",
                    ),
                    (quantile(0.99, size, ("caller",)), "p99 {{caller}}"),
                ],
                "none",
            ),
            6,
        ),
        (
            timeseries(
                "Encoder batch latency",
                "Time to embed one batch, by caller.",
                [
                    (quantile(0.5, seconds, ("caller",)), "p50 {{caller}}"),
                    (quantile(0.99, seconds, ("caller",)), "p99 {{caller}}"),
                ],
                "s",
            ),
            6,
        ),
        (
            timeseries(
                "Texts embedded/s",
                "Texts through the encoder per second, by caller.",
                [(f"sum by (caller) ({rate(size + '_sum')})", "{{caller}}")],
                "ops",
                stack=True,
            ),
            6,
        ),
        (
            timeseries(
                "Encoder replicas up",
                "Scrape health of the encoder service (job streamrec-encoder).",
                [(f"sum by (instance) ({selector('up', ENCODER_JOB)})", "{{instance}}")],
                "none",
                stack=True,
            ),
            6,
        ),
    ]


def milvus() -> list[tuple[Panel, int]]:
    """Latency and outcome of every Milvus call."""
    histogram = "streamrec_milvus_call_seconds"
    return [
        (
            timeseries(
                "Milvus call latency",
                "p50 and p99 per operation (search, upsert, query, ...).",
                [
                    (quantile(0.5, histogram, ("operation",)), "p50 {{operation}}"),
                    (quantile(0.99, histogram, ("operation",)), "p99 {{operation}}"),
                ],
                "s",
            ),
            12,
        ),
        (
            timeseries(
                "Milvus calls by operation and outcome",
                "Calls per second; outcome is ok or error.",
                [(f"sum by (operation, outcome) ({rate(histogram + '_count')})", "{{operation}} {{outcome}}")],
                "ops",
                stack=True,
            ),
            12,
        ),
    ]


def errors() -> list[tuple[Panel, int]]:
    """Dead letters, duplicates and failed calls."""
    return [
        (
            timeseries(
                "Dead letters by reason",
                "Messages sent to the dead-letter topic per second; the topic's headers carry the detail.",
                [(f"sum by (reason) ({rate('streamrec_dead_letters_total')})", "{{reason}}")],
                "ops",
                stack=True,
            ),
            8,
        ),
        (
            timeseries(
                "Events not applied",
                "Dead-lettered and duplicate (replayed or re-delivered) events per second, by agent.",
                [
                    (
                        f"sum by (agent, outcome) ({rate('streamrec_events_total', NOT_PROCESSED)})",
                        "{{agent}} {{outcome}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            8,
        ),
        (
            timeseries(
                "Failed Milvus calls",
                "Milvus calls that raised, per operation.",
                [
                    (
                        f"sum by (operation) ({rate('streamrec_milvus_call_seconds_count', FAILED)})",
                        "{{operation}}",
                    )
                ],
                "ops",
                stack=True,
            ),
            8,
        ),
    ]


def reliability() -> list[tuple[Panel, int]]:
    """Waiting on dependencies, poison messages, commits, rebalances and parked events."""
    return [
        (
            timeseries(
                "Retries of unavailable dependencies",
                "Retries per second while Milvus or the encoder is unreachable; the stream waits, nothing is dropped.",
                [(f"sum by (operation) ({rate('streamrec_retries_total')})", "{{operation}}")],
                "ops",
                stack=True,
            ),
            5,
        ),
        (
            timeseries(
                "Poison messages",
                "Batches that failed and were replayed event by event, and retries of single events before "
                "they were dead-lettered as processing_failed.",
                [
                    (f"sum by (agent) ({rate('streamrec_failed_batches_total')})", "{{agent}} failed batches"),
                    (f"sum by (agent) ({rate('streamrec_poison_retries_total')})", "{{agent}} retries"),
                ],
                "ops",
            ),
            5,
        ),
        (
            timeseries(
                "Age of the last offset commit",
                "Seconds since each worker last committed offsets. Growing while lag is not zero means "
                "the worker is stuck.",
                [
                    (
                        f"time() - max by (instance) ({selector('streamrec_last_commit_timestamp_seconds')})",
                        "{{instance}}",
                    )
                ],
                "s",
            ),
            5,
        ),
        (
            timeseries(
                "Rebalance to recovered",
                "From a rebalance starting to its tables recovered and processing resumed; rebalances per minute.",
                [
                    (quantile(0.99, "streamrec_recovery_seconds"), "p99 recovery"),
                    (f"sum({rate('streamrec_rebalances_total')}) * 60", "rebalances/min"),
                ],
                "s",
            ),
            5,
        ),
        (
            timeseries(
                "Clicks waiting for their product",
                "Clicks and purchases parked until their product is embedded, and how they leave the parking "
                "(expired and overflow are unknown_product dead letters).",
                [
                    (f"sum({selector('streamrec_parked_events_waiting')})", "waiting"),
                    (f"sum by (outcome) ({rate('streamrec_parked_events_total')})", "{{outcome}}/s"),
                ],
                "short",
            ),
            4,
        ),
    ]


SECTIONS = (
    ("Overview", overview),
    ("Stream", stream),
    ("Freshness", freshness),
    ("API", api),
    ("Model", model),
    ("Encoder", encoder),
    ("Milvus", milvus),
    ("Errors", errors),
    ("Reliability", reliability),
)


def layout() -> list[Panel]:
    """Rows of panels with ids and grid positions; each row's widths fill the grid."""
    panels: list[Panel] = []
    y = 0
    for row_title, section in SECTIONS:
        panels.append(
            {"type": "row", "title": row_title, "collapsed": False, "panels": [], "gridPos": grid(0, y, 24, 1)}
        )
        y += 1
        x = 0
        height = 4 if row_title == "Overview" else 8
        for panel, width in section():
            if x + width > GRID_WIDTH:
                x, y = 0, y + height
            panels.append(panel | {"gridPos": grid(x, y, width, height)})
            x += width
        y += height
    return [panel | {"id": i} for i, panel in enumerate(panels, start=1)]


def grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    """A Grafana grid position."""
    return {"x": x, "y": y, "w": w, "h": h}


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value query variable whose "All" matches absent labels too."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def build() -> dict[str, Any]:
    """The whole dashboard as a JSON-ready dict."""
    return {
        "uid": UID,
        "title": "streamrec",
        "description": "Throughput, freshness, API latency, encoder, Milvus and errors of streamrec.",
        "tags": ["streamrec"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                    "hide": 0,
                },
                variable("namespace", "Namespace", f"label_values(up{{{JOBS}}}, namespace)"),
                variable("instance", "Instance", f'label_values(up{{{JOBS}, namespace=~"$namespace"}}, instance)'),
            ]
        },
        "panels": layout(),
    }


def render() -> str:
    """The dashboard as the committed file's text."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write streamrec.json, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    args = parser.parse_args(argv)
    content = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != content:
            print(f"{OUTPUT} is out of date: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(content)
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
