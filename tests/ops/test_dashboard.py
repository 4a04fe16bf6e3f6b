"""The Grafana dashboard in deploy/grafana: built from its script, valid PromQL, only metrics the code exports."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SelectorsOf = Callable[[str], list[tuple[str, frozenset[str]]]]

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD: dict[str, Any] = json.loads((GRAFANA / "streamrec.json").read_text())
# Grafana replaces its interval macros before Prometheus sees a query; a parser needs a real duration.
_MACRO = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$", re.DOTALL)


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    flat = []
    for panel in panels:
        flat.append(panel)
        flat.extend(_panels(panel.get("panels", [])))
    return flat


PANELS = _panels(DASHBOARD["panels"])
QUERIES = {
    f"{panel['title']}/{target['refId']}": _MACRO.sub("5m", target["expr"])
    for panel in PANELS
    for target in panel.get("targets", [])
}
VARIABLES = {variable["name"]: variable for variable in DASHBOARD["templating"]["list"]}


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("streamrec_dashboard_builder", GRAFANA / "dashboard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_json_is_what_the_script_builds() -> None:
    """deploy/grafana/streamrec.json is exactly the output of deploy/grafana/dashboard.py (no hand edits, no drift)."""
    builder = _load_builder()
    assert builder.render() == (GRAFANA / "streamrec.json").read_text(), "run python deploy/grafana/dashboard.py"


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_query_parses_and_reads_only_exported_metrics(
    query: str, selectors_of: SelectorsOf, readable_metrics: frozenset[str]
) -> None:
    """Each panel query is valid PromQL and reads only series the code exports (or `up`)."""
    found = selectors_of(query)
    assert found, "a query without a metric selector"
    unknown = {metric for metric, _ in found} - readable_metrics
    assert not unknown, f"not exported by any streamrec module: {sorted(unknown)}"


@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_query_filters_on_namespace_and_instance(query: str, selectors_of: SelectorsOf) -> None:
    """Each selector of each panel query honours the namespace and instance template variables."""
    for metric, matchers in selectors_of(query):
        assert 'namespace=~"$namespace"' in matchers, metric
        assert 'instance=~"$instance"' in matchers, metric


def test_template_variables_query_valid_selectors(selectors_of: SelectorsOf, readable_metrics: frozenset[str]) -> None:
    """The namespace and instance variables exist, allow All, and their label_values() selectors parse."""
    for name in ("namespace", "instance"):
        variable = VARIABLES[name]
        assert variable["includeAll"]
        assert variable["multi"]
        assert variable["allValue"] == ".*"  # also matches the empty namespace of a static scrape
        match = _LABEL_VALUES.match(variable["query"])
        assert match is not None, variable["query"]
        assert match["label"] == name
        assert {metric for metric, _ in selectors_of(match["selector"])} <= readable_metrics
    assert VARIABLES["datasource"]["type"] == "datasource"


def test_dashboard_covers_the_promised_signals(selectors_of: SelectorsOf) -> None:
    """Throughput, lag, freshness, API latency, model quality, encoder, Milvus latency and errors each have a panel."""
    used = {metric for query in QUERIES.values() for metric, _ in selectors_of(query)}
    promised = {
        "streamrec_events_total",
        "streamrec_profile_freshness_seconds_bucket",
        "streamrec_api_request_seconds_bucket",
        "streamrec_api_request_seconds_count",
        "streamrec_encoder_batch_texts_bucket",
        "streamrec_encoder_batch_seconds_bucket",
        "streamrec_milvus_call_seconds_bucket",
        "streamrec_dead_letters_total",
        "streamrec_consumer_lag_messages",
        "streamrec_model_progressive_auc",
        "streamrec_model_progressive_logloss",
        "streamrec_model_version",
        "streamrec_model_age_seconds",
        "up",
    }
    assert promised <= used, sorted(promised - used)


def test_panels_have_unique_ids_and_fit_the_grid_without_overlap() -> None:
    """Panel ids are unique and no two panels share a grid cell of the 24-column layout."""
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in PANELS:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_reads_the_datasource_variable() -> None:
    """Panels query the ${datasource} variable, so the dashboard imports into any Grafana."""
    for panel in PANELS:
        if panel["type"] in {"row", "text"}:
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_builder_check_mode_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dashboard.py --check` exits 1 when the JSON differs from the script and 0 when it matches."""
    builder = _load_builder()
    stale = tmp_path / "streamrec.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(builder, "OUTPUT", stale)
    assert builder.main(["--check"]) == 1
    assert builder.main([]) == 0
    assert builder.main(["--check"]) == 0
    assert stale.read_text() == builder.render()
