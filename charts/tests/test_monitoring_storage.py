"""The chart's SLO rules have the history they claim: the Prometheus that infra/addons
installs keeps longer than the longest window any rule of the chart uses, on a volume that
survives a restart, and the cluster can provision that volume.

The rules are rendered from the chart for every environment; infra/addons and infra/aws are
read with python-hcl2, as Terraform parses them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

import rules

INFRA = Path(__file__).resolve().parents[2] / "infra"
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
WINDOW = re.compile(r"\[(\d+)([smhdw])\]")


def parse(path: Path) -> dict[str, list[Any]]:
    with path.open() as f:
        return hcl2.load(f)


def unwrap(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def variable_default(root: dict, name: str) -> Any:
    for block in root["variable"]:
        if name in block:
            return unwrap(block[name]["default"])
    raise AssertionError(f"no variable {name}")


def local(root: dict, name: str) -> Any:
    for block in root.get("locals", []):
        if name in block:
            return unwrap(block[name])
    raise AssertionError(f"no local {name}")


def resource(root: dict, rtype: str, name: str) -> dict:
    for block in root.get("resource", []):
        if name in block.get(rtype, {}):
            return block[rtype][name]
    raise AssertionError(f"no {rtype}.{name}")


def longest_window_seconds() -> int:
    longest = 0
    for environment in rules.ENVIRONMENTS:
        for group in rules.rule_groups(environment)["groups"]:
            for rule in group["rules"]:
                for amount, unit in WINDOW.findall(rule["expr"]):
                    longest = max(longest, int(amount) * UNIT_SECONDS[unit])
    return longest


@pytest.fixture(scope="module")
def addons() -> dict:
    """The parts of infra/addons the tests read: its variables, and monitoring.tf."""
    variables, monitoring = parse(INFRA / "addons" / "variables.tf"), parse(INFRA / "addons" / "monitoring.tf")
    return {**monitoring, "variable": variables["variable"]}


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
    [("prometheus", "storageSpec", "${var.prometheus_storage_gib}Gi"), ("alertmanager", "storage", "2Gi")],
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
    aws = parse(INFRA / "aws" / "eks.tf")
    assert "aws-ebs-csi-driver" in local(aws, "eks_addons")
    assert local(aws, "eks_addon_roles")["aws-ebs-csi-driver"] == "${aws_iam_role.ebs_csi_driver.arn}"
