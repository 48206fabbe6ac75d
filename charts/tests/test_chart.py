"""The chart lints, renders valid objects for every environment, and refuses bad values."""

from __future__ import annotations

import copy
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
        (
            {
                "shutdown": {"drainSeconds": 5},
                "ingress": {
                    "enabled": True,
                    "host": "orders.example.com",
                    "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
                },
            },
            "must be at least 30 behind the ALB",
        ),
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
        ({"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}, "must not exceed"),
        # The memory store lives in one pod's memory: never more than one pod.
        ({"replicas": 2}, r"config.store=memory .* up to 2 pods can run \(replicas\)"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}},
            r"up to 3 pods can run \(autoscaling.maxReplicas\): ids would collide",
        ),
    ],
)
def test_inconsistent_values_fail_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render.render("default", values)


def test_the_memory_store_renders_with_one_pod_and_postgres_scales() -> None:
    one = render.render("default", {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 1}})
    assert find(one, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 1
    scaled = render.render(
        "default",
        {"config": {"store": "postgres"}, "secretsManager": {"enabled": True, "secretName": "s"}, "replicas": 3},
    )
    assert find(scaled, "Deployment")["spec"]["replicas"] == 3


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


def test_rollout_is_configured_never_to_drop_below_the_budget(
    objects: list[dict[str, Any]], environment: str
) -> None:
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    if environment == "default":
        # The memory store of a default install: exactly one pod, no HPA to add more.
        assert deployment["spec"]["replicas"] == 1
        assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    else:
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
    # Release and namespace in every name: releases share Grafana (test_observability.py).
    namespace = find(objects, "Deployment")["metadata"]["namespace"]
    config_map = find(objects, "ConfigMap", f"order-service-{namespace}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"][f"order-service-{namespace}.json"])
    assert dashboard["uid"] == f"order-service-{namespace}"


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
    selectors += [
        find(objects, "NetworkPolicy", "order-service")["spec"]["podSelector"]["matchLabels"]
    ]
    for selector in selectors:
        assert selector.items() <= app_labels.items()
        assert not selector.items() <= test_labels.items()


# --- Pod Security Standards ----------------------------------------------------------------
# The application namespaces enforce the profile infra/addons labels them with. Each rule of
# the Pod Security Standards (Kubernetes 1.31) is a separate check over every pod the chart
# renders, so a change that breaks one names the rule admission would cite.

ADDONS_NAMESPACES = Path(__file__).resolve().parents[2] / "infra" / "addons" / "namespaces.tf"

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in pod.get(key) or []
    ]


def contexts(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.get("securityContext") or {} for c in all_containers(pod)]


def _host_process(pod, meta):
    sc = [pod.get("securityContext") or {}] + contexts(pod)
    return [s for s in sc if (s.get("windowsOptions") or {}).get("hostProcess")]


def _host_namespaces(pod, meta):
    return [k for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]


def _privileged(pod, meta):
    return [s for s in contexts(pod) if s.get("privileged")]


def _baseline_capabilities(pod, meta):
    return [
        cap
        for s in contexts(pod)
        for cap in (s.get("capabilities") or {}).get("add") or []
        if cap not in BASELINE_CAPABILITIES
    ]


def _host_path_volumes(pod, meta):
    return [v["name"] for v in pod.get("volumes") or [] if "hostPath" in v]


def _host_ports(pod, meta):
    return [
        p for c in all_containers(pod) for p in c.get("ports") or [] if p.get("hostPort", 0) != 0
    ]


def _apparmor(pod, meta):
    profiles = [
        (s.get("appArmorProfile") or {}).get("type")
        for s in [pod.get("securityContext") or {}] + contexts(pod)
    ]
    bad = [p for p in profiles if p not in (None, "RuntimeDefault", "Localhost")]
    annotations = (meta or {}).get("annotations") or {}
    bad += [
        v
        for k, v in annotations.items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and not (v == "runtime/default" or v.startswith("localhost/"))
    ]
    return bad


def _selinux(pod, meta):
    options = [
        s.get("seLinuxOptions") or {} for s in [pod.get("securityContext") or {}] + contexts(pod)
    ]
    return [
        o
        for o in options
        if o.get("type", "") not in SELINUX_TYPES or o.get("user") or o.get("role")
    ]


def _proc_mount(pod, meta):
    return [s for s in contexts(pod) if s.get("procMount", "Default") != "Default"]


def _seccomp_baseline(pod, meta):
    profiles = [
        (s.get("seccompProfile") or {}).get("type")
        for s in [pod.get("securityContext") or {}] + contexts(pod)
    ]
    return [p for p in profiles if p == "Unconfined"]


def _sysctls(pod, meta):
    return [
        s["name"]
        for s in (pod.get("securityContext") or {}).get("sysctls") or []
        if s["name"] not in SAFE_SYSCTLS
    ]


def _volume_types(pod, meta):
    return [
        v["name"] for v in pod.get("volumes") or [] if not set(v) - {"name"} <= RESTRICTED_VOLUMES
    ]


def _privilege_escalation(pod, meta):
    return [
        c["name"]
        for c in all_containers(pod)
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
    ]


def _run_as_non_root(pod, meta):
    pod_level = (pod.get("securityContext") or {}).get("runAsNonRoot")
    bad = []
    for c in all_containers(pod):
        own = (c.get("securityContext") or {}).get("runAsNonRoot")
        if own is False or (own is None and pod_level is not True):
            bad.append(c["name"])
    return bad


def _run_as_user(pod, meta):
    users = [(pod.get("securityContext") or {}).get("runAsUser")] + [
        s.get("runAsUser") for s in contexts(pod)
    ]
    return [u for u in users if u == 0]


def _seccomp_restricted(pod, meta):
    pod_type = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    bad = []
    for c in all_containers(pod):
        own = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        effective = own or pod_type
        if effective not in ("RuntimeDefault", "Localhost"):
            bad.append(c["name"])
    return bad


def _capabilities_restricted(pod, meta):
    bad = []
    for c in all_containers(pod):
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {
            "NET_BIND_SERVICE"
        }:
            bad.append(c["name"])
    return bad


BASELINE_RULES = {
    "hostProcess": _host_process,
    "host namespaces": _host_namespaces,
    "privileged containers": _privileged,
    "capabilities (baseline)": _baseline_capabilities,
    "hostPath volumes": _host_path_volumes,
    "host ports": _host_ports,
    "AppArmor": _apparmor,
    "SELinux": _selinux,
    "/proc mount type": _proc_mount,
    "seccomp (baseline)": _seccomp_baseline,
    "sysctls": _sysctls,
}
RESTRICTED_RULES = {
    **BASELINE_RULES,
    "volume types": _volume_types,
    "privilege escalation": _privilege_escalation,
    "running as non-root": _run_as_non_root,
    "running as non-root user": _run_as_user,
    "seccomp (restricted)": _seccomp_restricted,
    "capabilities (restricted)": _capabilities_restricted,
}

# A pod that breaks exactly one rule each: the checks must be able to fail.
VIOLATIONS = {
    "hostProcess": lambda p: p["securityContext"].update(windowsOptions={"hostProcess": True}),
    "host namespaces": lambda p: p.update(hostPID=True),
    "privileged containers": lambda p: p["containers"][0]["securityContext"].update(privileged=True),
    "capabilities (baseline)": lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "hostPath volumes": lambda p: p.setdefault("volumes", []).append({"name": "h", "hostPath": {"path": "/"}}),
    "host ports": lambda p: p["containers"][0]["ports"].append({"containerPort": 1, "hostPort": 1}),
    "AppArmor": lambda p: p["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
    "SELinux": lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
    "/proc mount type": lambda p: p["containers"][0]["securityContext"].update(procMount="Unmasked"),
    "seccomp (baseline)": lambda p: p["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    "sysctls": lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "volume types": lambda p: p.setdefault("volumes", []).append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
    "privilege escalation": lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
    "running as non-root": lambda p: p["containers"][0]["securityContext"].update(runAsNonRoot=False),
    "running as non-root user": lambda p: p["containers"][0]["securityContext"].update(runAsUser=0),
    "seccomp (restricted)": lambda p: [p["securityContext"].pop("seccompProfile", None), p["containers"][0]["securityContext"].pop("seccompProfile", None)],
    "capabilities (restricted)": lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["CHOWN"]),
}  # fmt: skip


def enforced_profile() -> str:
    """The Pod Security profile infra/addons enforces on the application namespaces."""
    import hcl2

    with ADDONS_NAMESPACES.open() as f:
        document = hcl2.load(f)
    for block in document.get("resource", []):
        namespace = block.get("kubernetes_namespace_v1", {}).get("app")
        if namespace:
            labels = namespace["metadata"][0]["labels"][0]
            return str(labels["pod-security.kubernetes.io/enforce"])
    raise AssertionError("infra/addons defines no kubernetes_namespace_v1.app")


def rendered_pods(
    objects: list[dict[str, Any]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    pods = []
    for obj in objects:
        if obj["kind"] == "Pod":
            pods.append((f"Pod {obj['metadata']['name']}", obj["spec"], obj["metadata"]))
        elif "template" in obj.get("spec", {}):
            template = obj["spec"]["template"]
            pods.append(
                (
                    f"{obj['kind']} {obj['metadata']['name']}",
                    template["spec"],
                    template.get("metadata"),
                )
            )
    return pods


def test_app_namespaces_enforce_restricted() -> None:
    assert enforced_profile() == "restricted"


@pytest.mark.parametrize("rule", list(RESTRICTED_RULES))
def test_pods_meet_pod_security_restricted(rule: str, objects: list[dict[str, Any]]) -> None:
    pods = rendered_pods(objects)
    assert len(pods) >= 2, "the Deployment and the helm test pod"
    for name, spec, meta in pods:
        assert RESTRICTED_RULES[rule](spec, meta) == [], f"{name} breaks the {rule!r} rule"


@pytest.mark.parametrize("rule", list(RESTRICTED_RULES))
def test_each_pod_security_rule_catches_its_violation(rule: str) -> None:
    spec = copy.deepcopy(find(render.render("staging"), "Deployment")["spec"]["template"]["spec"])
    assert RESTRICTED_RULES[rule](spec, {}) == []
    VIOLATIONS[rule](spec)
    assert RESTRICTED_RULES[rule](spec, {}) != []


def test_registry_credentials_reach_every_pod() -> None:
    """Docker Hub stays an option: a pull secret must reach the app and the helm test pod."""
    secrets = [{"name": "dockerhub"}]
    objects = render.render(
        "staging",
        {
            "image": {"repository": "docker.io/example-org/order-service"},
            "imagePullSecrets": secrets,
        },
    )
    for name, spec, _ in rendered_pods(objects):
        assert spec.get("imagePullSecrets") == secrets, f"{name} cannot pull a private image"


def test_default_registry_needs_no_pull_secret(
    environment: str, objects: list[dict[str, Any]]
) -> None:
    for name, spec, _ in rendered_pods(objects):
        assert "imagePullSecrets" not in spec, f"{name}: ECR is read with the node role"
    if environment != "default":
        assert ".dkr.ecr." in app_container(objects)["image"]


# --- migrations: the pre-install/pre-upgrade hook Job -----------------------------------------


def render_as(environment: str, is_install: bool) -> list[dict[str, Any]]:
    _, namespace = render.ENVIRONMENTS[environment]
    with helm.Chart.load(render.CHART) as chart:
        manifests = chart.render(
            render.values_for(environment),
            name=render.RELEASE,
            namespace=namespace,
            is_install=is_install,
            is_upgrade=not is_install,
            revision=1 if is_install else 2,
        )
    import yaml

    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_migrations_run_as_a_hook_job_with_the_deployment_environment(environment: str) -> None:
    objects = render.render(environment)
    job = find(objects, "Job", "order-service-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    deployment = find(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert container["image"] == app_container(objects)["image"]
    assert container["env"] == app_container(objects)["env"]
    assert pod["serviceAccountName"] == deployment["serviceAccountName"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == deployment["securityContext"]
    assert container["securityContext"] == app_container(objects)["securityContext"]
    # The Service and the NetworkPolicy select serving pods only.
    selector = find(objects, "Service")["spec"]["selector"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()


def test_no_migration_job_without_postgres() -> None:
    assert not [o for o in render.render("default") if o["kind"] == "Job"]


def test_the_service_account_exists_before_the_first_migration() -> None:
    """A pre-install hook runs before the release's own objects exist: on the first install
    the ServiceAccount is made as an earlier hook, owned by the release, so that later
    upgrades adopt it as an ordinary object."""
    first = find(render_as("staging", is_install=True), "ServiceAccount")["metadata"]
    assert first["annotations"]["helm.sh/hook"] == "pre-install"
    job = find(render_as("staging", is_install=True), "Job")["metadata"]
    assert int(first["annotations"]["helm.sh/hook-weight"]) < int(
        job["annotations"]["helm.sh/hook-weight"]
    )
    assert first["annotations"]["meta.helm.sh/release-name"] == render.RELEASE
    assert first["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    upgrade = find(render_as("staging", is_install=False), "ServiceAccount")["metadata"]
    assert "helm.sh/hook" not in upgrade.get("annotations", {})
