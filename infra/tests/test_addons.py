"""infra/addons cannot be planned here (no helm or kubernetes provider), so its
releases and values files are checked as parsed HCL and YAML."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from conftest import INFRA, ROOT, module_file, resources, unwrap

ADDONS = INFRA / "addons"
RELEASE_LABEL = {"release": "kube-prometheus-stack"}


def release(addons, name):
    releases = resources(addons, "helm_release")
    assert name in releases, f"helm_release.{name} is missing"
    return releases[name]


def static_values(body) -> dict:
    """Merge the values files (file("${path.module}/values/...")) of one helm_release."""
    merged: dict = {}
    files = [module_file(v) for v in unwrap(body["values"]) if isinstance(v, str)]
    files = [f for f in files if f]
    assert files, "the release must take its static values from a file under values/"
    for relative in files:
        merged.update(yaml.safe_load((ADDONS / relative).read_text()))
    return merged


def test_every_chart_version_is_pinned(addons):
    for name, body in resources(addons, "helm_release").items():
        version = unwrap(body.get("version"))
        assert version, f"helm_release.{name} must pin a chart version"
        variable = re.fullmatch(r"\$\{var\.(\w+)\}", version)
        if variable:
            declared = {
                k: unwrap(v) for block in addons["variable"] for k, v in block.items()
            }
            default = unwrap(declared[variable.group(1)].get("default"))
            assert re.fullmatch(r"\d+\.\d+\.\d+", default or ""), (
                f"var.{variable.group(1)} must default to an exact chart version"
            )


def test_adapter_exposes_requests_per_second_per_pod(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    rules = {r["name"]["as"]: r for r in values["rules"]["custom"]}
    assert "http_requests_per_second" in rules, (
        "the chart's HPA asks for http_requests_per_second (CONTRACT.md)"
    )
    rule = rules["http_requests_per_second"]
    assert rule["seriesQuery"].startswith("http_requests_total{")
    assert re.search(r"\brate\(<<\.Series>>", rule["metricsQuery"])
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    assert re.fullmatch(rule["name"]["matches"], "http_requests_total")


def test_adapter_exposes_p95_latency(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    rules = {r["name"]["as"]: r for r in values["rules"]["custom"]}
    rule = rules["http_request_duration_seconds_p95"]
    assert rule["seriesQuery"].startswith("http_request_duration_seconds_bucket{")
    assert "histogram_quantile(0.95," in rule["metricsQuery"]
    assert "le" in re.search(r"by \(([^)]*)\)\)$", rule["metricsQuery"]).group(1)


def test_adapter_queries_the_stack_prometheus(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    stack = release(addons, "kube_prometheus_stack")
    service = f"{unwrap(stack['name'])}-prometheus"
    assert values["prometheus"]["url"] == f"http://{service}.monitoring.svc"
    assert values["prometheus"]["port"] == 9090


def test_prometheus_selects_the_release_label(addons):
    stack = release(addons, "kube_prometheus_stack")
    # Its own ServiceMonitors carry release=<release name>, so the name must match.
    assert unwrap(stack["name"]) == "kube-prometheus-stack"
    spec = static_values(stack)["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}Selector"] == {"matchLabels": RELEASE_LABEL}
        # {} = every namespace, so staging and production releases are found.
        assert spec[f"{kind}NamespaceSelector"] == {}


def test_grafana_loads_labelled_dashboards_from_all_namespaces(addons):
    stack = release(addons, "kube_prometheus_stack")
    dashboards = static_values(stack)["grafana"]["sidecar"]["dashboards"]
    assert dashboards["enabled"] is True
    assert dashboards["label"] == "grafana_dashboard"
    assert dashboards["labelValue"] == "1"
    assert dashboards["searchNamespace"] == "ALL"
    sensitive = {s["name"]: s["value"] for s in unwrap(stack["set_sensitive"])}
    assert sensitive["grafana.adminPassword"] == "${var.grafana_admin_password}"


def test_grafana_password_variable_is_sensitive(addons):
    declared = {k: unwrap(v) for block in addons["variable"] for k, v in block.items()}
    assert unwrap(declared["grafana_admin_password"]["sensitive"]) is True


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("aws_load_balancer_controller", ("clusterName", "region", "vpcId", "eks.amazonaws.com/role-arn")),
        ("external_dns", ("domainFilters", "txtOwnerId", "eks.amazonaws.com/role-arn")),
    ],
)
def test_controllers_get_cluster_settings_and_irsa(addons, name, settings):
    body = release(addons, name)
    dynamic = " ".join(v for v in unwrap(body["values"]) if isinstance(v, str) and v.startswith("${yamlencode("))
    for setting in settings:
        assert f"'{setting}'" in dynamic, f"helm_release.{name} must set {setting}"
    assert unwrap(body["namespace"]) == "kube-system"


def test_external_dns_syncs_route53(addons):
    values = static_values(release(addons, "external_dns"))
    assert values["provider"]["name"] == "aws"
    assert values["policy"] == "sync"
    assert values["registry"] == "txt"


def test_chart_hpa_asks_for_the_adapter_metric():
    """When the app chart is present, its HPA must ask for a metric the adapter serves."""
    hpa = ROOT / "charts/order-service/templates/hpa.yaml"
    if not hpa.exists():
        pytest.skip("charts/order-service is not in this checkout")
    asked = set(re.findall(r"^\s*name:\s*(http_\w+)\s*$", hpa.read_text(), re.M))
    served = {
        r["name"]["as"]
        for r in yaml.safe_load((ADDONS / "values/prometheus-adapter.yaml").read_text())["rules"]["custom"]
    }
    assert asked, "the chart's HPA names no http_* metric"
    assert asked <= served, f"the HPA asks for {asked - served}, which prometheus-adapter does not serve"


def test_chart_monitoring_objects_carry_the_release_label():
    values_file = ROOT / "charts/order-service/values.yaml"
    if not values_file.exists():
        pytest.skip("charts/order-service is not in this checkout")
    values = yaml.safe_load(values_file.read_text())
    for key in ("serviceMonitor", "prometheusRule"):
        assert values[key]["labels"] == RELEASE_LABEL, f"{key}.labels must be {RELEASE_LABEL}"
