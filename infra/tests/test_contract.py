"""The names infra/aws, the chart and the workflows must agree on (CONTRACT.md).

terraform test (infra/aws/tests) proves the IRSA trust is built as
system:serviceaccount:<namespace>:<local.app_service_account> for each entry of
local.environments; this file checks those inputs against the chart's values,
CONTRACT.md and the workflows, and that the workflows only read Terraform
outputs and set variables that exist.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from conftest import INFRA, ROOT, load_root, locals_of, unwrap

CONTRACT = (ROOT / "CONTRACT.md").read_text()
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml")) if (ROOT / ".github/workflows").exists() else []
SCRIPTS = sorted((ROOT / ".github/scripts").glob("*")) if (ROOT / ".github/scripts").exists() else []


def contract_namespaces() -> set[str]:
    match = re.search(r"namespaces `([a-z0-9-]+)` and `([a-z0-9-]+)`", CONTRACT)
    assert match, "CONTRACT.md no longer names the two namespaces"
    return set(match.groups())


def contract_service_account() -> str:
    match = re.search(r"Release and ServiceAccount name: `([a-z0-9-]+)`", CONTRACT)
    assert match, "CONTRACT.md no longer names the ServiceAccount"
    return match.group(1)


@pytest.fixture(scope="module")
def aws_locals(aws):
    return locals_of(aws)


def test_irsa_namespaces_match_the_contract(aws_locals):
    environments = aws_locals["environments"]
    namespaces = {env["namespace"] for env in environments.values()}
    assert namespaces == contract_namespaces()
    # The environment keys are the keys of app_role_arns / app_secret_names.
    assert set(environments) == {"staging", "production"}


def test_irsa_service_account_matches_the_contract(aws_locals):
    assert aws_locals["app_service_account"] == contract_service_account()


def test_app_trust_is_built_from_namespace_and_service_account(aws):
    """The sub condition must be assembled from exactly these two locals."""
    text = (INFRA / "aws/app.tf").read_text()
    assert re.search(
        r'"\$\{local\.oidc_issuer_host\}:sub" = "system:serviceaccount:\$\{each\.value\.namespace\}:\$\{local\.app_service_account\}"',
        text,
    ), "app.tf must trust system:serviceaccount:<namespace>:<app_service_account> with StringEquals"


def test_chart_service_account_matches(aws_locals):
    values_files = sorted((ROOT / "charts/order-service").glob("values*.yaml"))
    if not values_files:
        pytest.skip("charts/order-service is not in this checkout")
    base = yaml.safe_load((ROOT / "charts/order-service/values.yaml").read_text())
    assert base["serviceAccount"]["name"] == aws_locals["app_service_account"]
    assert base["serviceAccount"]["create"] is True
    for path in values_files:
        overrides = yaml.safe_load(path.read_text()) or {}
        name = (overrides.get("serviceAccount") or {}).get("name", base["serviceAccount"]["name"])
        assert name == aws_locals["app_service_account"], f"{path.name} renames the ServiceAccount"


def test_workflow_namespaces_match(aws_locals):
    if not WORKFLOWS:
        pytest.skip(".github/workflows is not in this checkout")
    namespaces = {env["namespace"] for env in aws_locals["environments"].values()}
    # Literal namespaces on helm/kubectl command lines.
    for path in WORKFLOWS:
        for flag in re.findall(r"--namespace[ =]([A-Za-z0-9_${}.\"-]+)", path.read_text()):
            value = flag.strip('"')
            if not value.startswith("$"):
                assert value in namespaces | {"monitoring", "kube-system"}, f"{path.name}: --namespace {value}"
    # The reusable deploy workflow deploys into the namespace named like its
    # GitHub environment; its callers must pass exactly the IRSA namespaces.
    deployed = set()
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text())
        for job in (doc.get("jobs") or {}).values():
            if str(job.get("uses", "")).endswith("deploy-environment.yml"):
                deployed.add(job["with"]["environment"])
    if deployed:
        reusable = (ROOT / ".github/workflows/deploy-environment.yml").read_text()
        assert re.search(r"NAMESPACE: \$\{\{ inputs\.environment \}\}", reusable)
        assert deployed == namespaces


def outputs_of(root: str) -> set[str]:
    parsed = load_root(INFRA / root)
    return {name for block in parsed.get("output", []) for name in block}


def variables_of(root: str) -> set[str]:
    parsed = load_root(INFRA / root)
    return {name for block in parsed.get("variable", []) for name in block}


def test_contract_outputs_exist():
    section = CONTRACT.split("## Terraform outputs the workflows read", 1)[1].split("\n## ", 1)[0]
    aws_part, preview_part = section.split("`infra/preview`:", 1)
    for name in re.findall(r"`([a-z_]+)`", aws_part):
        # Map keys and the fields of preview_network, not outputs of their own.
        keys = {"staging", "production", "plan", "apply", "deploy_staging", "deploy_production"}
        keys |= {"preview", "publish", "subnet_ids", "security_group_ids"}
        if name not in keys:
            assert name in outputs_of("aws"), f"infra/aws lacks output {name}"
    for name in re.findall(r"`([a-z_]+)`", preview_part):
        assert name in outputs_of("preview"), f"infra/preview lacks output {name}"


def test_workflows_read_only_existing_outputs_and_variables():
    texts = [p.read_text() for p in WORKFLOWS + SCRIPTS if p.is_file()]
    if not texts:
        pytest.skip(".github is not in this checkout")
    text = "\n".join(texts)
    for root, name in re.findall(r"-chdir=infra/(\w+) output (?:-raw |-json )?(\w+)", text):
        assert name in outputs_of(root), f"a workflow reads output {name} that infra/{root} lacks"
    checked: set[tuple[str, str]] = set()
    for root, args in re.findall(r"-chdir=infra/(\w+) (?:plan|apply|destroy)\b((?:\\\n|[^\n])*)", text):
        for name in re.findall(r'-var "?(\w+)=', args):
            checked.add((root, name))
            assert name in variables_of(root), f"a workflow sets -var {name} that infra/{root} lacks"
    # Guard against a regex that silently matches nothing.
    if "-chdir=infra/preview apply" in text:
        assert ("preview", "pr_number") in checked
