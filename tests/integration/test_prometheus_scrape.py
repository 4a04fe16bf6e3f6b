"""A real Prometheus scrapes the all-in-one process and an encoder service: series come back through PromQL."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamrec.launcher import AllInOne, Publisher, wait_for
from streamrec.localkafka import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "streamrec-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "streamrec.json"
JOB = "streamrec-api"  # the job name the rules and the dashboard expect of an API (or all-in-one) process
ENCODER_JOB = "streamrec-encoder"
# Every wait is bounded: a 1 s scrape interval sees a change within a few seconds.
START_TIMEOUT_S = 30.0
SERIES_TIMEOUT_S = 45.0


class Prometheus:
    """A Prometheus server on loopback with its own storage, queried through its HTTP API."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; returns the `data` of a successful answer, raises with Prometheus' error otherwise."""
        url = f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # Prometheus answers 400/422 with its error in the body
            with exc:
                body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"GET {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant vector query; returns the result samples."""
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query that yields one sample, or None while it yields none."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _ready(base_url: str, path: str = "/-/ready") -> bool:
    try:
        with urllib.request.urlopen(base_url + path, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def _running(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float, log: Path
) -> Iterator[None]:
    """Wait until ``ready()``; always stop the process (SIGTERM, then SIGKILL) afterwards."""
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"{process.args!r} not ready (exit {process.poll()}):\n{tail}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def encoder_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamrec encoder` as its own process on loopback (the production shape); yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("encoder") / "encoder.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli", "encoder", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    with _running(process, lambda: _ready(base_url, "/readyz"), 120, log):
        yield base_url


@pytest.fixture(scope="module")
def prometheus(
    system: AllInOne, encoder_service: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Debian's Prometheus scraping the all-in-one API and the encoder every second, with the alert rules loaded."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus server is not installed: apt-get install prometheus (as .ci/run does)")
    home = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(system.api.base_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [target]}]},
            {
                "job_name": ENCODER_JOB,
                "static_configs": [{"targets": [urllib.parse.urlsplit(encoder_service).netloc]}],
            },
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = home / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    with _running(process, lambda: _ready(server.base_url), START_TIMEOUT_S, log):
        yield server


def test_the_encoder_service_is_scraped(prometheus: Prometheus, encoder_service: str) -> None:
    """The encoder process is up for Prometheus and its request counter reflects a real embed call."""
    request = urllib.request.Request(
        encoder_service + "/v1/embed",
        data=json.dumps({"texts": ["trail running shoes", "espresso beans"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert len(json.load(response)["vectors"]) == 2
    _eventually(prometheus, "encoder up", lambda: prometheus.value(f'up{{job="{ENCODER_JOB}"}}') == 1)
    ok = f'sum(streamrec_encoder_requests_total{{job="{ENCODER_JOB}", outcome="ok"}})'
    _eventually(prometheus, "encoder requests", lambda: (prometheus.value(ok) or 0) >= 1)


def _eventually(prometheus: Prometheus, what: str, check: Any) -> Any:
    try:
        return wait_for(check, timeout_s=SERIES_TIMEOUT_S, interval_s=0.5)
    except TimeoutError:
        pytest.fail(f"{what} not seen through Prometheus within {SERIES_TIMEOUT_S} s:\n{prometheus.log_tail()}")


def _shoppers(n: int) -> list[tuple[str, dict[str, object]]]:
    """A search and a click each for ``n`` new shoppers, timestamped now (so freshness is small and real)."""
    events: list[tuple[str, dict[str, object]]] = []
    for _ in range(n):
        user = f"scraped-{uuid.uuid4().hex[:10]}"
        base = {"schema_version": 1, "user_id": user}
        events.append(("search", {**base, "event_id": uuid.uuid4().hex, "ts": int(time.time() * 1000), "query": "tea"}))
        events.append(
            ("click", {**base, "event_id": uuid.uuid4().hex, "ts": int(time.time() * 1000), "product_id": "p00001"})
        )
    return events


def test_throughput_and_freshness_come_back_through_prometheus(prometheus: Prometheus, publisher: Publisher) -> None:
    """After shoppers' events, Prometheus holds non-zero event throughput and profile freshness for the API job."""
    up = f'up{{job="{JOB}"}}'
    _eventually(prometheus, "a successful scrape", lambda: prometheus.value(up) == 1)

    # Round one creates the labelled series; round two makes the counters rise between scrapes, so rates see it.
    processed = f'sum(streamrec_events_total{{job="{JOB}", agent="behavior", outcome="processed"}})'
    observed = f'sum(streamrec_profile_freshness_seconds_count{{job="{JOB}"}})'
    publisher.send_all(_shoppers(3))
    first = _eventually(
        prometheus, "processed behavior events", lambda: (v := prometheus.value(processed)) is not None and v >= 6 and v
    )
    profiles = _eventually(prometheus, "freshness observations", lambda: prometheus.value(observed))
    publisher.send_all(_shoppers(3))
    _eventually(prometheus, "more processed events", lambda: (prometheus.value(processed) or 0) >= first + 6)
    _eventually(prometheus, "more freshness observations", lambda: (prometheus.value(observed) or 0) > profiles)

    throughput = f'sum(rate(streamrec_events_total{{job="{JOB}", outcome="processed"}}[30s]))'
    rate = _eventually(prometheus, "a non-zero event rate", lambda: prometheus.value(throughput))
    assert rate > 0
    p99 = (
        f'histogram_quantile(0.99, sum by (le) (rate(streamrec_profile_freshness_seconds_bucket{{job="{JOB}"}}[30s])))'
    )
    freshness = _eventually(
        prometheus, "a freshness p99", lambda: (v := prometheus.value(p99)) is not None and not math.isnan(v) and v
    )
    # Not bounded above: earlier tests in the session replay sample events with old timestamps.
    assert freshness > 0
    print(f"through Prometheus: {rate:.2f} processed events/s, profile freshness p99 {freshness * 1000:.0f} ms")
    assert (prometheus.value(f'sum(streamrec_profile_freshness_seconds_sum{{job="{JOB}"}})') or 0) > 0


def test_dashboard_queries_run_on_the_live_server(prometheus: Prometheus) -> None:
    """Every dashboard query, its Grafana variables filled in as "All", is accepted by the real Prometheus."""
    dashboard = json.loads(DASHBOARD.read_text())
    macros = re.compile(r"\$__(rate_interval|interval|range)")
    exprs = [
        target["expr"]
        for row in dashboard["panels"]
        for panel in [row, *row.get("panels", [])]
        for target in panel.get("targets", [])
    ]
    assert exprs
    for expr in exprs:
        promql = macros.sub("30s", expr).replace("$namespace", ".*").replace("$instance", ".*")
        prometheus.get("/api/v1/query", query=promql)  # raises with Prometheus' own error message


def test_alert_rules_load_and_evaluate_cleanly(prometheus: Prometheus) -> None:
    """deploy/prometheus/streamrec-rules.yaml loads into the live server and each rule evaluates without error."""

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules) else None

    rules = _eventually(prometheus, "evaluated rules", evaluated)
    expected = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert [rule["name"] for rule in rules] == expected
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
