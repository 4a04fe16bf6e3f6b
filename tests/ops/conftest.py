"""What the operations tests share: the metric names the code exports and the selectors of a PromQL query."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "encoders", "ranker", "online_learning", "streamrec")

# The series names a metric family of each type exposes (prometheus_client
# strips `_total` from a counter's family name and adds `_created`).
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}

# Written by Prometheus itself for every scrape target; no process exports it.
SCRAPE_SERIES = frozenset({"up"})


def _metric_modules() -> list[str]:
    """Every module of the project that touches prometheus_client, so defines or may define metrics."""
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "prometheus_client" in path.read_text(encoding="utf-8"):
                relative = path.relative_to(ROOT).with_suffix("")
                parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
                modules.append(".".join(parts))
    return modules


@pytest.fixture(scope="session")
def exported_metrics() -> frozenset[str]:
    """Series names the processes expose on /metrics, read from the registry after importing the code."""
    modules = _metric_modules()
    assert modules, "no module of the project uses prometheus_client"
    for module in modules:
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SERIES_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    assert any(name.startswith("streamrec_") for name in names), "the registry holds no streamrec metric"
    return frozenset(names)


@pytest.fixture(scope="session")
def readable_metrics(exported_metrics: frozenset[str]) -> frozenset[str]:
    """What a dashboard or rule may read: the exported series plus those Prometheus writes per target."""
    return exported_metrics | SCRAPE_SERIES


def selectors(query: str) -> list[tuple[str, frozenset[str]]]:
    """The vector selectors of a PromQL query as (metric name, {'label=~"value"', ...}); ValueError if unparsable.

    A selector without a metric name (``{job="x"}``) has the name "".
    """
    operators = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
    found: list[tuple[str, frozenset[str]]] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            by_name = next((m.value for m in matchers if m.name == "__name__"), "")
            rendered = frozenset(f'{m.name}{operators[str(m.op).rsplit(".", 1)[-1]]}"{m.value}"' for m in matchers)
            found.append((node.name or by_name, rendered))
        return True

    promql_parser.walk(promql_parser.parse(query), pre_visit=visit)
    return found


@pytest.fixture(scope="session")
def selectors_of() -> Callable[[str], list[tuple[str, frozenset[str]]]]:
    """Parse a PromQL query with a real PromQL parser (promql-parser) and return its vector selectors."""
    return selectors


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; skips where it is not installed (.ci/run installs it, so CI never skips)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: apt-get install prometheus (as .ci/run does)")
    return path
