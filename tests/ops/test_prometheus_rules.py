"""The alert rules in deploy/prometheus: promtool accepts and unit-tests them; they read only exported metrics."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

SelectorsOf = Callable[[str], list[tuple[str, frozenset[str]]]]

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES: list[dict[str, Any]] = [
    rule
    for group in yaml.safe_load((PROMETHEUS / "streamrec-rules.yaml").read_text())["groups"]
    for rule in group["rules"]
]
ALERTS = {rule["alert"]: rule for rule in RULES if "alert" in rule}


def _promtool(promtool: str, *args: str) -> str:
    """Run promtool in deploy/prometheus; fail the test with its output unless it exits 0."""
    done = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def test_promtool_check_rules_accepts_the_rules(promtool: str) -> None:
    """`promtool check rules` finds every rule of streamrec-rules.yaml valid."""
    output = _promtool(promtool, "check", "rules", "streamrec-rules.yaml")
    assert f"SUCCESS: {len(RULES)} rules found" in output


def test_promtool_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules` passes streamrec-rules.test.yaml: each alert fires when it should and only then."""
    assert "SUCCESS" in _promtool(promtool, "test", "rules", "streamrec-rules.test.yaml")


def test_promtool_check_config_accepts_the_example_scrape_config(promtool: str) -> None:
    """deploy/prometheus/prometheus.yml is a valid configuration that loads the rules."""
    _promtool(promtool, "check", "config", "prometheus.yml")


def test_every_alert_has_a_firing_unit_test() -> None:
    """Every alert in the rules is expected to fire in at least one promtool unit test."""
    tests = yaml.safe_load((PROMETHEUS / "streamrec-rules.test.yaml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert set(ALERTS) == firing


@pytest.mark.parametrize("rule", RULES, ids=[rule.get("alert", rule.get("record")) for rule in RULES])
def test_rule_reads_only_exported_metrics(
    rule: dict[str, Any], selectors_of: SelectorsOf, readable_metrics: frozenset[str]
) -> None:
    """Each rule's expression parses and names only series the code exports (or `up`)."""
    metrics = {metric for metric, _ in selectors_of(rule["expr"])}
    assert metrics, "an expression without a metric"
    assert metrics <= readable_metrics, f"not exported by any streamrec module: {sorted(metrics - readable_metrics)}"


def test_rules_cover_the_promised_alerts() -> None:
    """Freshness, dead letters, encoder down, API errors and API latency are alerted on, each with a severity."""
    assert set(ALERTS) >= {
        "StreamrecProfileFreshnessP99OverBudget",
        "StreamrecDeadLetterRateHigh",
        "StreamrecEncoderDown",
        "StreamrecApiErrorRateHigh",
        "StreamrecApiLatencyP99High",
    }
    for name, rule in ALERTS.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
