"""The Helm chart in helm/streamrec: lints, renders offline, passes Kubernetes schemas, wires what it promises."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type information
import pytest
import yaml
from pydantic_settings import BaseSettings

from encoders.settings import EncoderSettings
from online_learning.settings import LearningSettings
from ranker.settings import RankerSettings
from streams.settings import StreamSettings

SelectorsOf = Callable[[str], list[tuple[str, frozenset[str]]]]
Manifest = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "streamrec"
PRODUCTION: dict[str, Any] = yaml.safe_load((CHART / "values-production.yaml").read_text())
VALUE_SETS = {"default": {}, "production": PRODUCTION}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the validator knows.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
# Custom resources of the Prometheus Operator: no Kubernetes schema; checked field by field below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
PORTS = {"worker": 6066, "api": 8080, "encoder": 8090}
# Every settings class the processes read; a new one belongs here.
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (StreamSettings, RankerSettings, LearningSettings, EncoderSettings)
# Settings the chart deliberately gives no value of its own, each with why.
# Anything else the code reads must reach the pods from a chart value (or a
# value the chart fixes, like STREAMREC_API_HOST), not only through extraEnv.
NOT_IN_CHART: dict[str, str] = {}
# Where the chart's defaults differ from the code's on purpose: pods listen on
# every interface and keep their state on the data volume, and a Milvus
# server (the chart requires one) serves HNSW best.
CHART_DEFAULTS = {"STREAMREC_API_HOST": "0.0.0.0", "STREAMREC_DATA_DIR": "/data", "STREAMREC_MILVUS_INDEX": "HNSW"}


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    """The chart, loaded from its directory by the Helm SDK (no cluster, no helm binary)."""
    return helm_python.Chart.load(CHART)


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every rendered Kubernetes object, as `helm template` would print them."""
    rendered = chart.render(values or {}, name="shop", namespace="shop", is_install=True)
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def one(manifests: list[Manifest], kind: str, component: str | None = None) -> Manifest:
    """The single object of a kind (and component label, if given)."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and (component is None or m["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects for component {component}"
    return found[0]


def container(manifests: list[Manifest], component: str) -> Manifest:
    """The streamrec container of a component's workload."""
    kind = "StatefulSet" if component == "worker" else "Deployment"
    (main,) = one(manifests, kind, component)["spec"]["template"]["spec"]["containers"]
    return dict(main)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_reports_no_warning_or_error(values: dict[str, Any]) -> None:
    """`helm lint --strict` (via the Helm SDK) finds nothing above info level, for default and production values."""
    report = helm_python.lint(CHART, values, strict=True, kube_version="v1.25.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_validates_against_kubernetes_schemas(
    chart: helm_python.Chart, values: dict[str, Any], kube_version: str
) -> None:
    """Each rendered object is valid (strict: no unknown fields) for the oldest and newest supported Kubernetes."""
    manifests = render(chart, values)
    assert {m["kind"] for m in manifests} >= {"StatefulSet", "Deployment", "Service", "ConfigMap", "Secret"}
    for manifest in manifests:
        if manifest["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {path}: {exc.message}")


def test_validator_is_strict_about_unknown_fields() -> None:
    """The schema check is not vacuous: a misspelt field in a Deployment fails validation."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replica": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": []}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"worker": {"replicas": -1}}, "/worker/replicas"),
        ({"api": {"replicas": -2}}, "/api/replicas"),
        ({"encoder": {"replicas": -1}}, "/encoder/replicas"),
        ({"milvus": {"uri": "/data/milvus.db"}}, "/milvus/uri"),
        ({"kafka": {"securityProtocol": "TLS"}}, "/kafka/securityProtocol"),
        ({"config": {"milvusIndex": "DISKANN"}}, "/config/milvusIndex"),
        ({"config": {"tableStore": "redis://"}}, "/config/tableStore"),
        ({"encoder": {"device": "tpu"}}, "/encoder/device"),
        ({"api": {"port": 70000}}, "/api/port"),
        ({"wokrer": {"replicas": 2}}, "wokrer"),
    ],
    ids=["negative-worker-replicas", "negative-api-replicas", "negative-encoder-replicas", "milvus-lite-file",
         "unknown-protocol", "unknown-index", "unknown-table-store", "unknown-device", "port-out-of-range",
         "misspelt-key"],
)  # fmt: skip
def test_values_schema_rejects_bad_values(chart: helm_python.Chart, values: dict[str, Any], path: str) -> None:
    """values.schema.json rejects the value and names where it is, at render time as at install time."""
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(path)):
        chart.render(values, name="shop", namespace="shop")


def test_schema_accepts_default_and_production_values(chart: helm_python.Chart) -> None:
    """Both shipped values files pass values.schema.json."""
    chart.validate_schema({})
    chart.validate_schema(PRODUCTION)


def test_worker_replicas_follow_partitions_and_never_exceed_them(chart: helm_python.Chart) -> None:
    """Workers default to one per partition, may be fewer, and more than the partitions fail the render."""
    assert one(render(chart), "StatefulSet")["spec"]["replicas"] == 4
    assert one(render(chart, {"config": {"topicPartitions": 12}}), "StatefulSet")["spec"]["replicas"] == 12
    assert one(render(chart, {"worker": {"replicas": 3}}), "StatefulSet")["spec"]["replicas"] == 3
    with pytest.raises(helm_python.HelmRenderError, match=r"worker\.replicas \(5\) exceeds config\.topicPartitions"):
        render(chart, {"worker": {"replicas": 5}})


@pytest.mark.parametrize("component", PORTS)
def test_component_runs_its_command_with_probes_on_its_port(chart: helm_python.Chart, component: str) -> None:
    """Each component runs `streamrec <component>` and probes /healthz (startup, liveness) and /readyz on its port."""
    main = container(render(chart), component)
    assert main["command"] == ["streamrec", component]
    assert main["image"] == "streamrec:0.1.0"
    (port,) = main["ports"]
    assert (port["name"], port["containerPort"]) == ("http", PORTS[component])
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert main[probe]["httpGet"] == {"path": path, "port": "http"}, probe


def test_image_is_configurable(chart: helm_python.Chart) -> None:
    """image.repository and image.tag set every container's image."""
    manifests = render(chart, {"image": {"repository": "registry.example.com/streamrec", "tag": "1.2.3"}})
    for component in PORTS:
        assert container(manifests, component)["image"] == "registry.example.com/streamrec:1.2.3"


def test_encoder_gets_gpu_node_selector_and_tolerations_from_values(chart: helm_python.Chart) -> None:
    """The encoder requests nvidia.com/gpu and is scheduled by the nodeSelector and tolerations in values."""
    manifests = render(chart, PRODUCTION)
    pod = one(manifests, "Deployment", "encoder")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == PRODUCTION["encoder"]["nodeSelector"]
    assert pod["tolerations"] == PRODUCTION["encoder"]["tolerations"]
    assert {"name": "STREAMREC_ENCODER_DEVICE", "value": "cuda"} in main["env"]
    assert one(manifests, "Deployment", "encoder")["spec"]["replicas"] == 2
    # Workers and API find the encoder through its Service.
    service = one(manifests, "Service", "encoder")["metadata"]["name"]
    for component in ("worker", "api"):
        env = {e["name"]: e.get("value") for e in container(manifests, component)["env"]}
        assert env["STREAMREC_ENCODER_URL"] == f"http://{service}:8090"


def test_encoder_can_be_disabled(chart: helm_python.Chart) -> None:
    """encoder.enabled=false renders no encoder and gives workers no encoder URL (they embed in-process)."""
    manifests = render(chart, {"encoder": {"enabled": False}})
    assert not [m for m in manifests if m["metadata"]["labels"].get("app.kubernetes.io/component") == "encoder"]
    assert "STREAMREC_ENCODER_URL" not in {e["name"] for e in container(manifests, "worker")["env"]}


def test_worker_state_is_on_a_volume_claim_by_default(chart: helm_python.Chart) -> None:
    """Each worker's /data (its RocksDB tables) is a 10Gi claim of the default StorageClass, so a restart keeps it."""
    worker = one(render(chart), "StatefulSet")
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in claim["spec"]
    assert "data" not in {v["name"] for v in worker["spec"]["template"]["spec"]["volumes"]}
    assert {"name": "data", "mountPath": "/data"} in container(render(chart), "worker")["volumeMounts"]
    assert one(render(chart), "ConfigMap")["data"]["STREAMREC_DATA_DIR"] == "/data"
    fast = render(chart, {"worker": {"persistence": {"storageClassName": "fast-ssd"}}})
    assert one(fast, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    ephemeral = one(render(chart, {"worker": {"persistence": {"enabled": False}}}), "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in ephemeral
    assert {"name": "data", "emptyDir": {}} in ephemeral["template"]["spec"]["volumes"]


def test_api_scales_with_an_hpa_and_keeps_a_disruption_budget(chart: helm_python.Chart) -> None:
    """The HPA and the PodDisruptionBudget target the API; without the HPA the Deployment sets replicas itself."""
    manifests = render(chart)
    api = one(manifests, "Deployment", "api")
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    assert "replicas" not in api["spec"]  # the HPA owns the count
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    fixed = render(chart, {"api": {"autoscaling": {"enabled": False}, "replicas": 3}})
    assert one(fixed, "Deployment", "api")["spec"]["replicas"] == 3
    assert not [m for m in fixed if m["kind"] == "HorizontalPodAutoscaler"]


def _code_settings(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name of every setting a settings class reads."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    return {prefix + field.upper(): field for field in cls.model_fields}


def _code_variables() -> set[str]:
    """Every STREAMREC_* variable a settings class of the code reads."""
    return {name for cls in SETTINGS_CLASSES for name in _code_settings(cls)}


def _settings_variables() -> set[str]:
    """Every STREAMREC_* variable the code reads, plus those the README documents."""
    return _code_variables() | set(re.findall(r"`(STREAMREC_[A-Z0-9_]+)`", (ROOT / "README.md").read_text()))


def _chart_variables(manifests: list[Manifest]) -> set[str]:
    """Variables the rendered chart gives pods: ConfigMap and Secret keys, and each container's own env."""
    names: set[str] = set()
    for manifest in manifests:
        if manifest["kind"] == "ConfigMap":
            names |= set(manifest.get("data", {}))
        elif manifest["kind"] == "Secret":
            names |= set(manifest.get("stringData", {}))
        elif manifest["kind"] in {"Deployment", "StatefulSet"}:
            for main in manifest["spec"]["template"]["spec"]["containers"]:
                names |= {e["name"] for e in main.get("env", [])}
    return {name for name in names if name.startswith("STREAMREC_")}


def test_every_setting_the_code_reads_can_be_set_through_the_chart(chart: helm_python.Chart) -> None:
    """Each STREAMREC_* field of the settings classes reaches the pods from the default or production values."""
    offered = set().union(*(_chart_variables(render(chart, values)) for values in VALUE_SETS.values()))
    assert set(NOT_IN_CHART) <= _code_variables(), "an exclusion names no setting of the code"
    assert not set(NOT_IN_CHART) & offered, "an excluded setting is in the chart after all"
    missing = _code_variables() - offered - set(NOT_IN_CHART)
    assert not missing, f"no chart value sets {sorted(missing)}: add them under config (or to NOT_IN_CHART, saying why)"


def test_configmap_defaults_are_the_codes_defaults(chart: helm_python.Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read back by the settings classes, the default ConfigMap gives the code's defaults but where the chart means to differ."""  # noqa: E501
    for name in [name for name in os.environ if name.startswith("STREAMREC_")]:
        monkeypatch.delenv(name)
    code = {cls: cls() for cls in SETTINGS_CLASSES}
    data = one(render(chart), "ConfigMap")["data"]
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    differing = set()
    for cls, defaults in code.items():
        from_chart = cls()
        for name, field in _code_settings(cls).items():
            if getattr(from_chart, field) != getattr(defaults, field):
                differing.add(name)
                assert data[name] == CHART_DEFAULTS.get(name), f"{name}: {data[name]!r} is not the code's default"
    assert differing == set(CHART_DEFAULTS)


def test_configmap_writes_numbers_as_the_settings_parse_them(chart: helm_python.Chart) -> None:
    """Large integers stay plain digits (Helm's float64 would print 1e+07, which an integer setting rejects)."""
    values = {"config": {"maxEventBytes": 10_000_000, "profileHalfLifeS": 1_209_600, "batchMaxWaitS": 0.05}}
    data = one(render(chart, values), "ConfigMap")["data"]
    assert data["STREAMREC_MAX_EVENT_BYTES"] == "10000000"
    assert data["STREAMREC_PROFILE_HALF_LIFE_S"] == "1209600"
    assert data["STREAMREC_BATCH_MAX_WAIT_S"] == "0.05"


def test_configmap_sets_only_settings_the_code_reads(chart: helm_python.Chart) -> None:
    """Every STREAMREC_* key of the ConfigMap is a real setting (no typo silently ignored); pods listen on 0.0.0.0."""
    data = one(render(chart), "ConfigMap")["data"]
    keys = {key for key in data if key.startswith("STREAMREC_")}
    assert keys - _settings_variables() == set()
    assert data["STREAMREC_API_HOST"] == "0.0.0.0"
    assert data["STREAMREC_API_PORT"] == "8080"
    assert data["STREAMREC_WORKER_WEB_PORT"] == "6066"


def test_connections_come_from_a_secret_and_referenced_keys(chart: helm_python.Chart) -> None:
    """Kafka and Milvus settings reach pods through the chart's Secret; referenced passwords never enter it."""
    manifests = render(chart, PRODUCTION)
    secret = one(manifests, "Secret")
    data = secret["stringData"]
    assert data["STREAMREC_KAFKA_BOOTSTRAP"] == PRODUCTION["kafka"]["bootstrap"]
    assert data["STREAMREC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["STREAMREC_MILVUS_URI"] == PRODUCTION["milvus"]["uri"]
    assert "STREAMREC_KAFKA_SASL_PASSWORD" not in data
    assert "STREAMREC_MILVUS_TOKEN" not in data
    for component in ("worker", "api"):
        main = container(manifests, component)
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in main["envFrom"]
        env = {e["name"]: e for e in main["env"]}
        assert env["STREAMREC_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "streamrec",
            "key": "password",
        }
        assert env["STREAMREC_MILVUS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "streamrec-milvus",
            "key": "token",
        }
        assert env["STREAMREC_KAFKA_SSL_CAFILE"]["value"] == "/etc/streamrec/kafka-ca/ca.crt"
        assert {"name": "kafka-ca", "mountPath": "/etc/streamrec/kafka-ca", "readOnly": True} in main["volumeMounts"]


def test_existing_secret_replaces_the_charts_secret(chart: helm_python.Chart) -> None:
    """With existingSecret the chart creates no Secret and every pod reads the named one."""
    manifests = render(chart, {"existingSecret": "streamrec-connections"})
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for component in ("worker", "api"):
        assert {"secretRef": {"name": "streamrec-connections"}} in container(manifests, component)["envFrom"]


def test_monitoring_objects_are_optional(chart: helm_python.Chart) -> None:
    """Defaults render no ServiceMonitor, PrometheusRule or dashboard ConfigMap (no Prometheus Operator needed)."""
    manifests = render(chart)
    assert not [m for m in manifests if m["kind"] in OPERATOR_KINDS]
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "ConfigMap"] == ["shop-streamrec"]


def test_prometheus_rule_embeds_the_rules_of_deploy_prometheus(chart: helm_python.Chart) -> None:
    """The PrometheusRule's spec is exactly deploy/prometheus/streamrec-rules.yaml, which promtool checks."""
    rule = one(render(chart, PRODUCTION), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy" / "prometheus" / "streamrec-rules.yaml").read_text())


def test_dashboard_configmap_holds_the_grafana_dashboard(chart: helm_python.Chart) -> None:
    """The dashboard ConfigMap carries deploy/grafana/streamrec.json unchanged, labelled for Grafana's sidecar."""
    (dashboard,) = [m for m in render(chart, PRODUCTION) if m["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    expected = json.loads((ROOT / "deploy" / "grafana" / "streamrec.json").read_text())
    assert json.loads(dashboard["data"]["streamrec.json"]) == expected


def _matches(matcher: str, value: str) -> bool:
    label_op, _, quoted = matcher.partition('"')
    pattern = quoted.removesuffix('"')
    if label_op.endswith("=~"):
        return re.fullmatch(pattern, value) is not None
    return label_op.endswith("=") and not label_op.endswith("!=") and pattern == value


def test_service_monitor_scrapes_each_component_under_the_job_names_the_rules_use(
    chart: helm_python.Chart, selectors_of: SelectorsOf
) -> None:
    """The ServiceMonitor selects the worker, API and encoder Services, and every `job` the rules and dashboard name is one of their job labels."""  # noqa: E501
    manifests = render(chart, PRODUCTION)
    monitor = one(manifests, "ServiceMonitor")
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert [(e["port"], e["path"]) for e in spec["endpoints"]] == [("http", "/metrics")]
    selected = [
        m
        for m in manifests
        if m["kind"] == "Service" and spec["selector"]["matchLabels"].items() <= m["metadata"]["labels"].items()
    ]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected} == set(PORTS)
    for service in selected:
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    jobs = {s["metadata"]["labels"][spec["jobLabel"]] for s in selected}

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "streamrec-rules.yaml").read_text())
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "streamrec.json").read_text())
    queries = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    queries += [v["query"].removeprefix("label_values(").rsplit(",", 1)[0] for v in dashboard["templating"]["list"][1:]]
    job_matchers = [m for q in queries for _, matchers in selectors_of(q) for m in matchers if m.startswith("job")]
    assert job_matchers, "no rule or variable selects a job"
    for matcher in job_matchers:
        assert any(_matches(matcher, job) for job in jobs), f"{matcher} matches none of {sorted(jobs)}"


def test_notes_render_the_api_address(chart: helm_python.Chart) -> None:
    """NOTES.txt renders and tells how to reach the API Service."""
    notes = chart.render({}, name="shop", namespace="shop")["streamrec/templates/NOTES.txt"]
    assert "svc/shop-streamrec-api" in notes
    assert "workers: 4" in notes
