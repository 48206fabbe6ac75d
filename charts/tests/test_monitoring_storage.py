"""The chart's SLO rules have the history they claim: the Prometheus that infra/addons
installs keeps longer than the longest window any rule of the chart uses, on a volume that
survives a restart, and the cluster can provision that volume.

The rules are rendered from the chart for every environment; infra/addons and infra/aws are
read with python-hcl2, as Terraform parses them.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import rules

INFRA = Path(__file__).resolve().parents[2] / "infra"
# PromQL durations: one or more <number><unit>, largest unit first ("4w2d", "1h30m").
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
DURATION = r"(?:\d+(?:ms|[smhdwy]))+"
# A range selector [30d] or a subquery [30d:5m] (its range is what it looks back), and an
# offset, which moves the whole window further back.
RANGE = re.compile(rf"\[({DURATION})(?::(?:{DURATION})?)?\]")
OFFSET = re.compile(rf"\boffset\s+({DURATION})")


def _infra_hcl() -> ModuleType:
    """infra/tests/conftest.py, which parses Terraform roots for the infra tests: the same
    parser here (it is no package, and charts/tests has a conftest of its own)."""
    spec = importlib.util.spec_from_file_location("infra_hcl", INFRA / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hcl = _infra_hcl()
load_root, unwrap = hcl.load_root, hcl.unwrap


def variable_default(root: dict, name: str) -> Any:
    for block in root["variable"]:
        if name in block:
            return unwrap(block[name]["default"])
    raise AssertionError(f"no variable {name}")


def local(root: dict, name: str) -> Any:
    found = hcl.locals_of(root)
    assert name in found, f"no local {name}"
    return found[name]


def resource(root: dict, rtype: str, name: str) -> dict:
    found = hcl.resources(root, rtype)
    assert name in found, f"no {rtype}.{name}"
    return found[name]


def duration_seconds(text: str) -> float:
    return sum(int(n) * UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)(ms|[smhdwy])", text))


def look_back_seconds(expr: str) -> float:
    """How far back an expression reads: its longest range plus its longest offset (an upper
    bound when several selectors carry different ones)."""
    ranges = [duration_seconds(d) for d in RANGE.findall(expr)]
    offsets = [duration_seconds(d) for d in OFFSET.findall(expr)]
    return max(ranges, default=0) + max(offsets, default=0)


def longest_window_seconds() -> float:
    return max(
        look_back_seconds(rule["expr"])
        for environment in rules.ENVIRONMENTS
        for group in rules.rule_groups(environment)["groups"]
        for rule in group["rules"]
    )


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        ("sum(rate(x[30d]))", 30),
        ("max_over_time(ratio[35d:1h])", 35),
        ("rate(x[4w3d])", 31),
        ("rate(x[1d] offset 30d)", 31),
        ("rate(x[5m]) / rate(x[1h])", 1 / 24),
    ],
)
def test_look_back_reads_ranges_subqueries_and_offsets(expr, days):
    assert look_back_seconds(expr) == pytest.approx(days * 86400)


@pytest.fixture(scope="module")
def addons() -> dict:
    return load_root(INFRA / "addons")


def test_the_chart_uses_a_30_day_window():
    assert longest_window_seconds() == 30 * 86400


def test_prometheus_keeps_a_day_longer_than_the_longest_rule_window(addons):
    retention_days = variable_default(addons, "prometheus_retention_days")
    longest_days = longest_window_seconds() / 86400
    assert retention_days >= longest_days + 1, (
        f"Prometheus keeps {retention_days} days, a rule of the chart looks back {longest_days:g} days: "
        f"raise prometheus_retention_days in infra/addons to at least {longest_days + 1:g}"
    )
    spec = local(addons, "prometheus_storage")
    assert spec["retention"] == "${var.prometheus_retention_days}d"
    static = yaml.safe_load((INFRA / "addons" / "values" / "kube-prometheus-stack.yaml").read_text())
    assert "retention" not in static["prometheus"]["prometheusSpec"], "the static values would be overridden silently"


@pytest.mark.parametrize(
    "component, key, size",
    [("prometheus", "storageSpec", "${local.prometheus_volume_gib}Gi"), ("alertmanager", "storage", "2Gi")],
)
def test_prometheus_and_alertmanager_keep_their_data_on_a_gp3_volume(addons, component, key, size):
    assert local(addons, f"{component}_storage")[key] == f"${{local.gp3_claims.{component}}}"
    # python-hcl2 gives the for expression back as text: the class, the access mode and
    # each component's size are read from it.
    claims = str(local(addons, "gp3_claims"))
    assert "'storageClassName': '${kubernetes_storage_class_v1.gp3.metadata[0].name}'" in claims, claims
    assert "'accessModes': ['ReadWriteOnce']" in claims, claims
    assert "'storage': '${size}'" in claims and f"'{component}': '{size}'" in claims, claims
    stack = resource(addons, "helm_release", "kube_prometheus_stack")
    values = " ".join(v for v in unwrap(stack["values"]) if isinstance(v, str))
    assert f"local.{component}_storage" in values, f"kube-prometheus-stack does not get local.{component}_storage"


def test_the_default_storage_class_is_encrypted_gp3_bound_where_the_pod_runs(addons):
    sc = resource(addons, "kubernetes_storage_class_v1", "gp3")
    assert unwrap(sc["storage_provisioner"]) == "ebs.csi.aws.com"
    assert unwrap(sc["volume_binding_mode"]) == "WaitForFirstConsumer"
    assert unwrap(sc["parameters"]) == {"type": "gp3", "encrypted": "true"}
    metadata = unwrap(sc["metadata"])
    assert unwrap(metadata["annotations"]) == {"storageclass.kubernetes.io/is-default-class": "true"}


def test_the_cluster_runs_the_ebs_csi_driver_that_provisions_the_class():
    aws = load_root(INFRA / "aws")
    assert "aws-ebs-csi-driver" in local(aws, "eks_addons")
    assert local(aws, "eks_addon_roles")["aws-ebs-csi-driver"] == "${aws_iam_role.ebs_csi_driver.arn}"
