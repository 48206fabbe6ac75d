"""The rules and the dashboard query only metrics that exist, each release watches only its own
namespace, every alert is unit-tested and has a runbook, and the SLIs match what the real binary
exports. promtool runs the unit tests themselves (charts/tests/rules.py, called by the chart
stage)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import render
import rules
from conftest import contract_metric_names, free_port, rendered_env
from test_contract import request, running

FILES = render.CHART / "files"
CHART_README = render.CHART / "README.md"
RELEASES = ("staging", "production")
SLO_PERIOD_HOURS = 30 * 24
DURATION = {"m": 1 / 60, "h": 1, "d": 24}

# Series from outside the service that the dashboard and the alerts use on purpose.
KUBE_STATE_METRICS = {"kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}
PROMETHEUS = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (with Grafana variables) selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals, e.g. label values
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "", e)  # Grafana variables
    e = re.sub(r"label_values\(([^,)]*)(?:,[^)]*)?\)", r"\1", e)  # Grafana's label_values(m, l)
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[match.end() :].lstrip().startswith("("):
            continue  # a function call
        if match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every vector selector in a PromQL expression."""
    found = []
    for name in metric_names(expr):
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^}}]*\}})?", expr):
            found.append((name, match.group(1) or ""))
    return found


def allowed(name: str, exported: set[str], recorded: set[str] = frozenset()) -> bool:
    base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
    return (
        name in exported
        or base in exported
        or name in KUBE_STATE_METRICS | PROMETHEUS
        or name in recorded
    )


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{job="order-service", namespace=~"$namespace"}[$__rate_interval]))) / on (pod) '
        "group_left up offset 5m"
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}
    assert metric_names('label_values(http_requests_total{job="x"}, namespace)') == {
        "http_requests_total"
    }
    assert sorted(selectors('a:b:c{x="1"} > 2 and up == 0 and absent(up{y="2"})')) == [
        ("a:b:c", '{x="1"}'),
        ("up", ""),
        ("up", '{y="2"}'),
    ]


# --- the rules --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=("default", *RELEASES))
def release(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    """(namespace, rules) of the PrometheusRule rendered for an environment."""
    _, namespace = render.ENVIRONMENTS[request.param]
    groups = rules.rule_groups(request.param)["groups"]
    return namespace, [rule for group in groups for rule in group["rules"]]


def alert_rules(environment: str = "production") -> list[dict[str, Any]]:
    groups = rules.rule_groups(environment)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_use_only_exported_or_recorded_metrics(
    release: tuple[str, list[dict[str, Any]]],
) -> None:
    _, all_rules = release
    exported = contract_metric_names()
    recorded = {rule["record"] for rule in all_rules if "record" in rule}
    for rule in all_rules:
        unknown = {n for n in metric_names(rule["expr"]) if not allowed(n, exported, recorded)}
        assert unknown == set(), f"{rule.get('alert') or rule['record']} queries {unknown}"


def test_every_selector_names_the_release_namespace(
    release: tuple[str, list[dict[str, Any]]],
) -> None:
    """When staging and production share a Prometheus, a rule that reads every namespace would
    fire once per release for the same trouble (#11)."""
    namespace, all_rules = release
    for rule in all_rules:
        found = selectors(rule["expr"])
        for name, matchers in found:
            assert f'namespace="{namespace}"' in matchers, (
                f"{rule.get('alert') or rule['record']}: {name}{matchers} reads every namespace"
            )
        if "record" in rule:
            assert rule["labels"]["namespace"] == namespace


def test_releases_render_disjoint_recorded_series() -> None:
    """Both releases record the same rule names; the namespace label keeps the series apart."""
    series = {}
    for environment in RELEASES:
        for group in rules.rule_groups(environment)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    key = (rule["record"], tuple(sorted(rule["labels"].items())))
                    assert key not in series, f"{key} recorded by {series[key]} and {environment}"
                    series[key] = environment
    assert len(series) >= 2 * 2 * 8


def promtool_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in rules.test_files()
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]
    evaluations = [case for case in promtool_cases() if case["alertname"] == rule["alert"]]
    assert any(case["exp_alerts"] for case in evaluations), "no case where it fires"
    assert any(not case["exp_alerts"] for case in evaluations), "no case where it stays silent"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_a_runbook_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    path, anchor = url.split("#")
    assert path == "charts/order-service/README.md"
    headings = re.findall(r"^#+\s+(.+?)\s*$", CHART_README.read_text(), flags=re.M)
    anchors = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}
    assert anchor in anchors, f"no heading for #{anchor} in {CHART_README.name}"


def slo_alerts() -> list[dict[str, Any]]:
    return [rule for rule in alert_rules() if "slo" in rule["expr"]]


def test_the_slo_alerts_are_the_four_burn_rates_of_both_slis() -> None:
    windows = {
        (
            re.search(r'slo="(\w+)"', rule["expr"]).group(1),  # type: ignore[union-attr]
            tuple(re.findall(r"ratio_rate(\w+)\{", rule["expr"])),
            float(re.search(r"> \(([\d.]+) \*", rule["expr"]).group(1)),  # type: ignore[union-attr]
            rule["labels"]["severity"],
        )
        for rule in slo_alerts()
    }
    assert windows == {
        (slo, *burn)
        for slo in ("availability", "latency")
        for burn in (
            (("1h", "5m"), 14.4, "critical"),
            (("6h", "30m"), 6.0, "critical"),
            (("1d", "2h"), 3.0, "warning"),
            (("3d", "6h"), 1.0, "warning"),
        )
    }


@pytest.mark.parametrize("rule", slo_alerts(), ids=lambda r: r["alert"])
def test_slo_summary_names_the_budget_spent(rule: dict[str, Any]) -> None:
    """burn × long window / 30 days of the budget is gone when the alert fires."""
    long_window = re.search(r"ratio_rate(\d+)([mhd])\{", rule["expr"])
    burn = re.search(r"> \(([\d.]+) \*", rule["expr"])
    assert long_window and burn
    hours = int(long_window.group(1)) * DURATION[long_window.group(2)]
    spent = float(burn.group(1)) * hours / SLO_PERIOD_HOURS * 100
    assert f"{spent:g}% of the 30-day budget gone in {long_window.group(0)[10:-1]}" in (
        rule["annotations"]["summary"]
    )


def test_objectives_are_per_release() -> None:
    """A release's objective moves its own thresholds and recorded objective, no one else's."""
    staging = rules.rule_groups("staging", {"slo": {"availability": {"objective": 99.5}}})
    production = rules.rule_groups("production")

    def threshold(groups: dict[str, Any], alert: str) -> str:
        rule = next(r for g in groups["groups"] for r in g["rules"] if r.get("alert") == alert)
        return str(re.search(r"> \(([^)]*)\)", rule["expr"]).group(1))  # type: ignore[union-attr]

    assert threshold(staging, "OrderServiceAvailabilityBurn1h") == "14.4 * 0.005"
    assert threshold(production, "OrderServiceAvailabilityBurn1h") == "14.4 * 0.001"
    assert threshold(staging, "OrderServiceLatencyBurn1h") == "14.4 * 0.01"


def test_sli_labels_and_latency_bound_exist_in_the_real_exposition(
    binary: Path, tmp_path: Path
) -> None:
    """The rules select le="<threshold>" and leave out the probe routes: both must be label
    values the binary really exports, or the latency SLI is empty and probes count as users."""
    objects = render.render("default", {"ports": {"http": free_port(), "metrics": free_port()}})
    # Reads of orders need a key outside ENVIRONMENT=local.
    env = {**rendered_env(objects), "API_KEYS": "sli-key"}
    api, metrics = env["PORT"], env["METRICS_PORT"]
    groups = rules.rule_groups("default")["groups"]
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"] if "record" in r)
    (le,) = set(re.findall(r'le="([^"]+)"', exprs))
    (excluded,) = set(re.findall(r'route!~"([^"]+)"', exprs))
    with running(binary, env, tmp_path, int(api)):
        for path in ("/orders", "/ready", "/health"):
            auth = {"Authorization": "Bearer sli-key"}
            assert request("GET", f"http://127.0.0.1:{api}{path}", None, auth)[0] == 200
        status, body, _ = request("GET", f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200
    exposition = body.decode()
    buckets = set(
        re.findall(r'^http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"', exposition, re.M)
    )
    assert le in buckets, f"le={le} is not a bucket bound of {sorted(buckets, key=float)}"
    routes = set(re.findall(r'^http_requests_total\{[^}]*route="([^"]+)"', exposition, re.M))
    assert "/orders" in routes
    assert {r for r in routes if re.fullmatch(excluded, r)} == {"/health", "/ready"}


# --- the dashboard ----------------------------------------------------------------------------


def dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield value["query"]
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def rendered_dashboard(
    environment: str, overrides: dict[str, Any] | None = None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(ConfigMap, file name, dashboard) as the chart renders them for an environment."""
    (config_map,) = [
        o
        for o in render.render(environment, overrides)
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    ((file_name, text),) = config_map["data"].items()
    return config_map, file_name, json.loads(text)


def variables(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def recorded_names() -> set[str]:
    groups = rules.rule_groups("production")["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def test_dashboard_uses_only_exported_or_recorded_metrics() -> None:
    _, _, dashboard = rendered_dashboard("production")
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 10
    exported = contract_metric_names()
    used = set().union(*(metric_names(q) for q in queries))
    assert {n for n in used if not allowed(n, exported, recorded_names())} == set()
    # The panels the service is operated by: budget and burn, requests, errors, latency,
    # in-flight and the concurrency limit, pods.
    assert {
        "namespace:order_service_slo_errors:ratio_rate30d",
        "namespace:order_service_slo_errors:ratio_rate1h",
        "namespace:order_service_slo_objective:ratio",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "http_concurrency_limit",
        "http_requests_refused_total",
        "kube_deployment_status_replicas_available",
    } <= used


@pytest.mark.parametrize("dashboard_namespace", ["", "monitoring"])
def test_dashboards_of_both_releases_coexist(dashboard_namespace: str) -> None:
    """Grafana's sidecar writes every dashboard file into one folder and Grafana keeps one
    dashboard per uid: the releases' file names, uids and titles must differ, and so must the
    ConfigMaps when both go to one namespace (#11)."""
    rendered = [
        rendered_dashboard(env, {"dashboard": {"namespace": dashboard_namespace}})
        for env in RELEASES
    ]
    where = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c, _, _ in rendered}
    assert len(where) == len(RELEASES)
    assert len({file_name for _, file_name, _ in rendered}) == len(RELEASES)
    assert len({d["uid"] for _, _, d in rendered}) == len(RELEASES)
    assert len({d["title"] for _, _, d in rendered}) == len(RELEASES)
    for _, _, dashboard in rendered:
        assert len(dashboard["uid"]) <= 40  # Grafana's limit


def test_a_long_release_name_keeps_uids_unique_and_short() -> None:
    long_name = {"fullnameOverride": "order-service-with-a-rather-long-release-name"}
    uids = {rendered_dashboard(env, long_name)[2]["uid"] for env in RELEASES}
    assert len(uids) == len(RELEASES)
    assert all(len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("environment", RELEASES)
def test_each_dashboard_shows_its_own_release(environment: str) -> None:
    _, namespace = render.ENVIRONMENTS[environment]
    _, _, dashboard = rendered_dashboard(environment)
    fixed = variables(dashboard)
    assert fixed["namespace"]["query"] == namespace
    assert fixed["namespace"]["type"] == "constant"
    assert fixed["deployment"]["query"] == "order-service"
    # The threshold the slow-request panel uses is the one the latency SLI uses.
    groups = rules.rule_groups(environment)["groups"]
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"])
    assert {fixed["latency_threshold"]["query"]} == set(re.findall(r'le="([^"]+)"', exprs))
    for query in dashboard_queries(dashboard):
        for name, matchers in selectors(query):
            if name != "up" or "job=" in matchers:
                assert re.search(r'namespace=~?"\$namespace"', matchers), f"{name} in {query}"


def grafana_to_promql(expr: str, fixed: dict[str, Any], range_: str) -> str:
    """What Grafana sends to Prometheus for an instant query over the time range `range_`."""
    for name, variable in fixed.items():
        expr = expr.replace(f"${name}", str(variable["query"]))
    return expr.replace("$__range", range_).replace("$__rate_interval", "5m")


def test_slo_panels_answer_from_the_rendered_rules(tmp_path: Path) -> None:
    """Prometheus's own engine (promtool) evaluates the SLO panels' queries over a day of
    traffic, on production's rendered rules: 0.025 % errors and 0.25 % slow requests burn both
    budgets at 0.25×, leaving 75 %; the tables name the routes and statuses that spent it."""
    rules.write_rule_files(tmp_path)
    _, _, dashboard = rendered_dashboard("production")
    fixed = variables(dashboard)
    panels = {p["title"]: p for p in dashboard["panels"]}

    def query(title: str, ref: str = "A") -> str:
        target = next(t for t in panels[title]["targets"] if t["refId"] == ref)
        return grafana_to_promql(target["expr"], fixed, "1d")

    base = 'job="order-service",namespace="production",pod="order-service-a",method="GET"'
    steps = 150  # 10-minute samples: a day and an hour
    series = {
        # route: (requests, errors with status, slow requests) per 10 minutes
        "/orders": (10000, ("500", 3), 50),
        "/orders/{id}": (10000, ("503", 2), 0),
    }
    input_series = []
    for route, (total, (status, errors), slow) in series.items():
        labels = f'{base},route="{route}"'
        input_series += [
            {"series": f'http_requests_total{{{labels},status="200"}}',
             "values": f"0+{total - errors}x{steps}"},
            {"series": f'http_requests_total{{{labels},status="{status}"}}',
             "values": f"0+{errors}x{steps}"},
            {"series": f'http_request_duration_seconds_bucket{{{labels},le="0.3"}}',
             "values": f"0+{total - slow}x{steps}"},
            {"series": f"http_request_duration_seconds_count{{{labels}}}",
             "values": f"0+{total}x{steps}"},
        ]
    # Probes failing and slow, which must not count.
    ready = f'{base},route="/ready"'
    input_series += [
        {"series": f'http_requests_total{{{ready},status="503"}}', "values": f"0+5000x{steps}"},
        {"series": f"http_request_duration_seconds_count{{{ready}}}", "values": f"0+5000x{steps}"},
    ]
    slo = {"namespace": "production"}
    cases = [
        # Ratios are rounded here: floating point leaves 0.7500000000000002.
        (f'round({query("Error budget left (30 days)")}, 0.0001)', [
            ({**slo, "slo": "availability"}, 0.75), ({**slo, "slo": "latency"}, 0.75)]),
        (f'round({query("Burn rate by alert window", "A")}, 0.0001)', [
            ({**slo, "slo": "availability"}, 0.25), ({**slo, "slo": "latency"}, 0.25)]),
        (query("5xx answers that spent the availability budget, by route and status"), [
            ({"route": "/orders", "status": "500"}, 3 * 144),
            ({"route": "/orders/{id}", "status": "503"}, 2 * 144)]),
        (query("Requests that spent the latency budget (slower than the threshold), by route"), [
            ({"method": "GET", "route": "/orders"}, 50 * 144),
            ({"method": "GET", "route": "/orders/{id}"}, 0)]),
    ]
    test = {
        "rule_files": ["production.rules.yaml"],
        "evaluation_interval": "5m",
        "group_eval_order": ["order-service.slo.ratios", "order-service.slo.budget"],
        "tests": [{
            "interval": "10m",
            "input_series": input_series,
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": "1d",
                    "exp_samples": [
                        {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
                         "value": value}
                        for labels, value in samples
                    ],
                }
                for expr, samples in cases
            ],
        }],
    }
    path = tmp_path / "dashboard.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = rules.promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
