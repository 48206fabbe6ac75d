"""The chart lints, renders valid objects for every environment, and refuses bad values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

import render
from conftest import CONTRACT, app_container, find, rendered_env

KUBE_VERSION = "1.31.0"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.json",
}


def strict(schema: Any) -> Any:
    """Reject unknown fields like `kubectl --validate=strict`: a CRD's structural schema would
    otherwise let the API server prune a misspelt field silently."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


def lint_errors(values: dict[str, Any]) -> list[str]:
    report = helm.lint(render.CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    # Severity 2 is a warning, 3 an error; --strict fails on both.
    return [m["error"] for m in report["messages"] if m["severity"] >= 2] + report["errors"]


def test_lint_strict(environment: str) -> None:
    assert lint_errors(render.values_for(environment)) == []


@pytest.mark.parametrize(
    "typo",
    [{"replicaz": 3}, {"config": {"logLevle": "debug"}}, {"ingress": {"hots": "x.example.com"}}],
)
def test_misspelt_value_fails_lint(typo: dict[str, Any]) -> None:
    errors = lint_errors(typo)
    assert any("additional properties" in e for e in errors), errors


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"terminationGracePeriodSeconds": 25}, "must exceed shutdown.drainSeconds"),
        ({"shutdown": {"graceSeconds": 40}}, "must exceed shutdown.drainSeconds"),
        ({"ports": {"metrics": 8000}}, "ports.http and ports.metrics must differ"),
        ({"pdb": {"minAvailable": 1}}, "exactly one of pdb.minAvailable"),
        ({"config": {"store": "postgres"}}, "needs a database URL"),
        ({"secretsManager": {"enabled": True}}, "secretName is required"),
        (
            {
                "ingress": {
                    "enabled": True,
                    "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
                }
            },
            "ingress.host is required",
        ),
        (
            {"ingress": {"enabled": True, "host": "orders.example.com"}},
            "certificateArn is required",
        ),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}, "must not exceed"),
    ],
)
def test_inconsistent_values_fail_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render.render("default", values)


def test_objects_match_kubernetes_and_crd_schemas(objects: list[dict[str, Any]]) -> None:
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        crd_schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if crd_schema:
            schema = strict(json.loads((SCHEMAS / crd_schema).read_text()))
            jsonschema.validate(obj, schema)
        else:
            # Raises SchemaNotFoundError for a kind it does not know: nothing goes unchecked.
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    assert {"Deployment", "Service", "ServiceAccount", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_crd_schema_catches_a_misspelt_field() -> None:
    monitor = find(render.render("default"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    schema = strict(json.loads((SCHEMAS / "servicemonitor-v1.json").read_text()))
    with pytest.raises(jsonschema.ValidationError, match="scrapeInterval"):
        jsonschema.validate(monitor, schema)


def test_pod_is_hardened(objects: list[dict[str, Any]]) -> None:
    pods = [find(objects, "Deployment")["spec"]["template"]["spec"], find(objects, "Pod")["spec"]]
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]


def test_probes_hit_health_and_ready_on_the_http_port(objects: list[dict[str, Any]]) -> None:
    container = app_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9090}, "container ports must be the binary's defaults"
    expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}


def test_grace_period_outlasts_drain_and_grace(objects: list[dict[str, Any]]) -> None:
    env = rendered_env(objects)
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    budget = int(env["SHUTDOWN_DRAIN_SECONDS"]) + int(env["SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > budget
    assert "lifecycle" not in app_container(objects), "a preStop hook would eat into the budget"


def test_rollout_never_drops_below_the_budget(objects: list[dict[str, Any]]) -> None:
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    hpa = find(objects, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]


def test_service_monitor_scrapes_the_metrics_container_port(objects: list[dict[str, Any]]) -> None:
    monitor = find(objects, "ServiceMonitor")
    service = find(objects, "Service")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    service_port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    container_port = next(
        p for p in app_container(objects)["ports"] if p["name"] == service_port["targetPort"]
    )
    assert container_port["name"] == "metrics"
    assert str(container_port["containerPort"]) == rendered_env(objects)["METRICS_PORT"]


def test_service_account_is_the_irsa_subject(
    environment: str, objects: list[dict[str, Any]]
) -> None:
    account = find(objects, "ServiceAccount")
    assert account["metadata"]["name"] == "order-service"
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "order-service"
    role = render.WORKFLOW_VALUES.get(environment, {}).get("serviceAccount", {}).get("roleArn")
    annotations = account["metadata"].get("annotations", {})
    assert annotations.get("eks.amazonaws.com/role-arn") == role


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_ingress_routes_only_to_the_http_port(environment: str) -> None:
    objects = render.render(environment)
    ingress = find(objects, "Ingress")
    workflow = render.WORKFLOW_VALUES[environment]["ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [
        {"HTTP": 80},
        {"HTTPS": 443},
    ]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == workflow["certificateArn"]
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/ready"
    assert annotations["external-dns.alpha.kubernetes.io/hostname"] == workflow["host"]
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "order-service", "port": {"name": "http"}}]


@pytest.mark.parametrize(
    ("environment", "min_replicas", "max_replicas"), [("staging", 1, 3), ("production", 2, 6)]
)
def test_deployed_environments(environment: str, min_replicas: int, max_replicas: int) -> None:
    objects = render.render(environment)
    env = rendered_env(objects)
    assert env["ENVIRONMENT"] == environment
    assert env["STORE"] == "postgres"
    assert env["SECRETS_MANAGER_ENABLED"] == "true"
    assert env["AWS_SECRET_NAME"] == f"order-service/{environment}"
    assert "DATABASE_URL" not in env, "the database URL comes from the secret, never the chart"
    hpa = find(objects, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (min_replicas, max_replicas)
    image = app_container(objects)["image"]
    assert image.endswith(":" + render.WORKFLOW_VALUES[environment]["image"]["tag"])


def test_production_has_a_budget_and_scales_on_request_rate() -> None:
    objects = render.render("production")
    pdb = find(objects, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    metrics = find(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    pods_metric = next(m["pods"] for m in metrics if m["type"] == "Pods")
    assert pods_metric["metric"]["name"] == "http_requests_per_second"


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "a" * 64
    objects = render.render("staging", {"image": {"digest": digest}})
    assert app_container(objects)["image"] == (
        render.WORKFLOW_VALUES["staging"]["image"]["repository"] + "@" + digest
    )


def test_dashboard_config_map_is_picked_up_by_grafana(objects: list[dict[str, Any]]) -> None:
    config_map = find(objects, "ConfigMap", "order-service-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["order-service.json"])
    assert dashboard["uid"] == "order-service"


def test_schema_has_every_value_the_workflows_set() -> None:
    text = CONTRACT.read_text()
    section = text.split("## Chart values the workflows set", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"`([a-zA-Z]+(?:\.[a-zA-Z]+)+)`", section)
    assert "image.tag" in keys, "could not parse the chart values in CONTRACT.md"
    schema = json.loads((render.CHART / "values.schema.json").read_text())
    for key in keys:
        node = schema
        for part in key.split("."):
            assert part in node.get("properties", {}), f"{key} is missing from values.schema.json"
            node = node["properties"][part]
        assert node["type"] == "string", f"{key}: workflows pass it with --set-string"


def test_selectors_match_only_the_app_pods(objects: list[dict[str, Any]]) -> None:
    """The helm test pod must not join the Service, the PDB or the NetworkPolicy's pod set."""
    app_labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    test_labels = find(objects, "Pod")["metadata"]["labels"]
    selectors = [find(objects, "Service")["spec"]["selector"]]
    selectors += [
        o["spec"]["selector"]["matchLabels"] for o in objects if o["kind"] == "PodDisruptionBudget"
    ]
    selectors += [find(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= app_labels.items()
        assert not selector.items() <= test_labels.items()
