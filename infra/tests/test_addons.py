"""infra/addons cannot be planned here (no helm or kubernetes provider), so its
releases and values files are checked as parsed HCL and YAML."""

from __future__ import annotations

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
            declared = {k: unwrap(v) for block in addons["variable"] for k, v in block.items()}
            default = unwrap(declared[variable.group(1)].get("default"))
            assert re.fullmatch(r"\d+\.\d+\.\d+", default or ""), (
                f"var.{variable.group(1)} must default to an exact chart version"
            )


def test_adapter_is_configured_to_expose_requests_per_second_per_pod(addons):
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


def test_adapter_is_configured_to_expose_p95_latency(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    rules = {r["name"]["as"]: r for r in values["rules"]["custom"]}
    rule = rules["http_request_duration_seconds_p95"]
    assert rule["seriesQuery"].startswith("http_request_duration_seconds_bucket{")
    assert "histogram_quantile(0.95," in rule["metricsQuery"]
    assert "le" in re.search(r"by \(([^)]*)\)\)$", rule["metricsQuery"]).group(1)


def test_adapter_is_configured_to_query_the_stack_prometheus(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    stack = release(addons, "kube_prometheus_stack")
    service = f"{unwrap(stack['name'])}-prometheus"
    assert values["prometheus"]["url"] == f"http://{service}.monitoring.svc"
    assert values["prometheus"]["port"] == 9090


def test_prometheus_is_configured_to_select_the_release_label(addons):
    stack = release(addons, "kube_prometheus_stack")
    # Its own ServiceMonitors carry release=<release name>, so the name must match.
    assert unwrap(stack["name"]) == "kube-prometheus-stack"
    spec = static_values(stack)["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
        assert spec[f"{kind}Selector"] == {"matchLabels": RELEASE_LABEL}
        # {} = every namespace, so staging and production releases are found.
        assert spec[f"{kind}NamespaceSelector"] == {}


def test_grafana_is_configured_to_load_labelled_dashboards_from_all_namespaces(addons):
    stack = release(addons, "kube_prometheus_stack")
    dashboards = static_values(stack)["grafana"]["sidecar"]["dashboards"]
    assert dashboards["enabled"] is True
    assert dashboards["label"] == "grafana_dashboard"
    assert dashboards["labelValue"] == "1"
    assert dashboards["searchNamespace"] == "ALL"


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        (
            "aws_load_balancer_controller",
            ("clusterName", "region", "vpcId", "eks.amazonaws.com/role-arn"),
        ),
        ("external_dns", ("domainFilters", "txtOwnerId", "eks.amazonaws.com/role-arn")),
    ],
)
def test_controllers_get_cluster_settings_and_irsa(addons, name, settings):
    body = release(addons, name)
    dynamic = " ".join(
        v for v in unwrap(body["values"]) if isinstance(v, str) and v.startswith("${yamlencode(")
    )
    for setting in settings:
        assert f"'{setting}'" in dynamic, f"helm_release.{name} must set {setting}"
    assert unwrap(body["namespace"]) == "kube-system"


def test_external_dns_is_configured_to_sync_route53(addons):
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
        for r in yaml.safe_load((ADDONS / "values/prometheus-adapter.yaml").read_text())["rules"][
            "custom"
        ]
    }
    assert asked, "the chart's HPA names no http_* metric"
    assert asked <= served, (
        f"the HPA asks for {asked - served}, which prometheus-adapter does not serve"
    )


def test_chart_monitoring_objects_carry_the_release_label():
    values_file = ROOT / "charts/order-service/values.yaml"
    if not values_file.exists():
        pytest.skip("charts/order-service is not in this checkout")
    values = yaml.safe_load(values_file.read_text())
    for key in ("serviceMonitor", "prometheusRule"):
        assert values[key]["labels"] == RELEASE_LABEL, f"{key}.labels must be {RELEASE_LABEL}"


# --- Grafana admin password: Secrets Manager only, never in a state --------------


def test_no_variable_carries_the_grafana_password(addons):
    declared = {k for block in addons["variable"] for k in block}
    assert not {
        name for name in declared if "password" in name and not name.endswith("_version")
    }, "a password variable puts the value in every plan file and in CI secrets"


def test_grafana_password_is_written_and_read_write_only(addons):
    version = resources(addons, "aws_secretsmanager_secret_version")["grafana_admin"]
    assert "secret_string" not in version, "secret_string would store the password in the state"
    assert unwrap(version["secret_string_wo"]).startswith(
        "${ephemeral.aws_secretsmanager_random_password."
    )
    secret = resources(addons, "kubernetes_secret_v1")["grafana_admin"]
    assert "data" not in secret and "binary_data" not in secret
    password = unwrap(secret["data_wo"])["admin-password"]
    assert password.startswith("${ephemeral.aws_secretsmanager_secret_version.grafana_admin.")
    assert "ephemeral" in addons, "the password must be read through ephemeral resources"


def test_grafana_reads_the_admin_secret(addons):
    stack = release(addons, "kube_prometheus_stack")
    assert "set_sensitive" not in stack
    dynamic = " ".join(v for v in unwrap(stack["values"]) if v.startswith("${yamlencode("))
    assert "'existingSecret': '${kubernetes_secret_v1.grafana_admin.metadata[0].name}'" in dynamic
    assert "'passwordKey': 'admin-password'" in dynamic


# --- Pod Security of the platform namespaces --------------------------------------


def namespace_labels(addons, name):
    body = resources(addons, "kubernetes_namespace_v1")[name]
    return unwrap(unwrap(body["metadata"])["labels"])


def test_node_exporter_is_configured_into_a_namespace_that_admits_host_access(addons):
    """node-exporter needs hostNetwork, hostPID and hostPath: only `privileged` admits them.
    A DaemonSet that never becomes ready fails the whole kube-prometheus-stack release."""
    stack = release(addons, "kube_prometheus_stack")
    dynamic = " ".join(v for v in unwrap(stack["values"]) if v.startswith("${yamlencode("))
    match = re.search(
        r"'prometheus-node-exporter': \{'namespaceOverride': '\$\{kubernetes_namespace_v1\.(\w+)\.",
        dynamic,
    )
    assert match, "node-exporter must be installed into a namespace of its own"
    labels = namespace_labels(addons, match.group(1))
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_monitoring_namespace_stays_below_privileged(addons):
    labels = namespace_labels(addons, "monitoring")
    assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")


def test_app_namespaces_are_created_restricted_with_readiness_gates(addons):
    body = resources(addons, "kubernetes_namespace_v1")["app"]
    assert unwrap(body["for_each"]) == "${local.platform.app_namespaces}"
    labels = namespace_labels(addons, "app")
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_app_namespaces_are_those_of_the_contract(aws):
    outputs = {k: unwrap(v) for block in aws["output"] for k, v in block.items()}
    assert "app_namespaces" in outputs
    from test_contract import contract_namespaces

    env_locals = {k: unwrap(v) for block in aws["locals"] for k, v in block.items()}
    assert {e["namespace"] for e in env_locals["environments"].values()} == contract_namespaces()


def test_deployer_role_is_bound_to_the_deploy_group_of_its_namespace(addons):
    binding = resources(addons, "kubernetes_role_binding_v1")["deployer"]
    assert unwrap(binding["for_each"]) == "${kubernetes_role_v1.deployer}"
    subject = unwrap(binding["subject"])
    assert unwrap(subject["kind"]) == "Group"
    assert unwrap(subject["name"]) == "${local.platform.deploy_kubernetes_groups[each.key]}"
    role_ref = unwrap(binding["role_ref"])
    assert unwrap(role_ref["kind"]) == "Role", "a ClusterRoleBinding would reach every namespace"


# --- Install order ------------------------------------------------------------------


def release_dependencies(addons) -> dict[str, set[str]]:
    """Release -> releases it waits for, through depends_on or a reference."""
    releases = resources(addons, "helm_release")
    graph: dict[str, set[str]] = {}
    for name, body in releases.items():
        text = repr(body)
        graph[name] = {
            other for other in releases if other != name and f"helm_release.{other}" in text
        }
    return graph


def waits_for(graph, name, other) -> bool:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for dep in graph[current]:
            if dep == other:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def test_service_monitors_wait_for_the_monitoring_crds(addons):
    """A release with a ServiceMonitor fails with "no matches for kind ServiceMonitor"
    when it is installed before kube-prometheus-stack brings the CRDs."""
    graph = release_dependencies(addons)
    for name, body in resources(addons, "helm_release").items():
        if name == "kube_prometheus_stack":
            continue
        values = (
            static_values(body)
            if any(module_file(v) for v in unwrap(body["values"]) if isinstance(v, str))
            else {}
        )
        if values.get("serviceMonitor", {}).get("enabled"):
            assert waits_for(graph, name, "kube_prometheus_stack"), (
                f"helm_release.{name} turns on a ServiceMonitor but does not wait for the CRDs"
            )


def test_releases_wait_for_the_load_balancer_controller_webhooks(addons):
    """Every release installed after the controller must wait until its webhook pods are
    ready; the stack that brings the CRDs is installed before the controller exists."""
    graph = release_dependencies(addons)
    controller = release(addons, "aws_load_balancer_controller")
    assert unwrap(controller["wait"]) is True
    for name in graph:
        if name in ("aws_load_balancer_controller", "kube_prometheus_stack"):
            continue
        assert waits_for(graph, name, "aws_load_balancer_controller"), (
            f"helm_release.{name} may be installed while the controller's webhooks start"
        )
    assert not waits_for(graph, "kube_prometheus_stack", "aws_load_balancer_controller")


def test_controller_has_no_webhook_in_front_of_every_service(addons):
    values = static_values(release(addons, "aws_load_balancer_controller"))
    assert values["enableServiceMutatorWebhook"] is False


# --- Resource metrics ---------------------------------------------------------------


def test_metrics_server_is_configured_to_serve_the_resource_metrics_api(addons):
    """The HPA scales on CPU and memory: without metrics-server it never acts."""
    body = release(addons, "metrics_server")
    assert unwrap(body["chart"]) == "metrics-server"
    assert unwrap(body["repository"]) == "https://kubernetes-sigs.github.io/metrics-server/"
    values = static_values(body)
    assert values["replicas"] >= 2


def test_adapter_leaves_the_resource_metrics_api_to_metrics_server(addons):
    values = static_values(release(addons, "prometheus_adapter"))
    assert "resource" not in values["rules"], "two servers cannot both register metrics.k8s.io"


def test_chart_hpa_is_configured_to_scale_on_resource_metrics():
    hpa = ROOT / "charts/order-service/templates/hpa.yaml"
    if not hpa.exists():
        pytest.skip("charts/order-service is not in this checkout")
    assert "type: Resource" in hpa.read_text()
