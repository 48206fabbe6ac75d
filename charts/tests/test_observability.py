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
    env = rendered_env(objects)
    api, metrics = env["PORT"], env["METRICS_PORT"]
    groups = rules.rule_groups("default")["groups"]
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"] if "record" in r)
    (le,) = set(re.findall(r'le="([^"]+)"', exprs))
    (excluded,) = set(re.findall(r'route!~"([^"]+)"', exprs))
    with running(binary, env, tmp_path, int(api)):
        for path in ("/orders", "/ready", "/health"):
            assert request("GET", f"http://127.0.0.1:{api}{path}")[0] == 200
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


def test_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    queries = list(dashboard_queries(dashboard))
    assert len(queries) >= 10
    exported = contract_metric_names()
    used = set().union(*(metric_names(q) for q in queries))
    assert {n for n in used if not allowed(n, exported)} == set()
    # The panels the service is operated by: requests, errors, latency, in-flight, pods.
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "kube_deployment_status_replicas_available",
    } <= used
