"""The dashboard and the alerts query only metrics that exist, and every alert is unit-tested."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import contract_metric_names

FILES = Path(__file__).resolve().parents[1] / "order-service" / "files"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts.test.yaml"

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


def allowed(name: str, exported: set[str]) -> bool:
    base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
    return name in exported or base in exported or name in KUBE_STATE_METRICS | PROMETHEUS


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


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alerts_use_only_exported_metrics() -> None:
    exported = contract_metric_names()
    for rule in alert_rules():
        unknown = {n for n in metric_names(rule["expr"]) if not allowed(n, exported)}
        assert unknown == set(), f"{rule['alert']} queries unknown metrics {unknown}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]
    evaluations = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]
    assert any(case["exp_alerts"] for case in evaluations), "no case where it fires"
    assert any(not case["exp_alerts"] for case in evaluations), "no case where it stays silent"
