"""infra/preview applied for real against moto: apply, a plan with no changes, destroy.

Checks what AWS would hold after the apply (the Lambda resource policy, the reserved
concurrency) rather than what the configuration says.
"""

from __future__ import annotations

import json
import zipfile

import pytest

from conftest import INFRA
from moto_rehearsal import Moto, Root, MIRROR

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"no provider mirror at {MIRROR}: hashicorp/aws cannot be installed"
)

FUNCTION = "order-service-preview-pr-42"
BOUNDARY = "order-service-preview-boundary"


@pytest.fixture(scope="module")
def moto():
    server = Moto()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def preview(moto, tmp_path_factory):
    work = tmp_path_factory.mktemp("preview")
    bundle = work / "bootstrap.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    # infra/aws creates the permissions boundary the preview roles must carry.
    moto.client("iam").create_policy(
        PolicyName=BOUNDARY,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}],
            }
        ),
    )
    root = Root(INFRA / "preview", work, moto)
    root.init()
    variables = ("-var", "pr_number=42", "-var", "store=memory", "-var", f"lambda_zip={bundle}")
    root.apply(*variables)
    yield root, variables
    root.destroy(*variables)


def test_apply_then_plan_shows_no_changes(preview):
    root, variables = preview
    changes = root.plan_changes(*variables)
    if changes:
        pytest.fail("a plan right after apply must show no changes:\n" + changes)


def test_function_url_policy_allows_both_invoke_actions(preview, moto):
    """Since October 2025 a public Function URL answers 403 without lambda:InvokeFunction."""
    policy = json.loads(moto.client("lambda").get_policy(FunctionName=FUNCTION)["Policy"])
    public = {
        s["Action"]
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] in ("*", {"AWS": "*"})
    }
    assert public == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_function_url_is_public(preview, moto):
    url = moto.client("lambda").get_function_url_config(FunctionName=FUNCTION)
    assert url["AuthType"] == "NONE"
    assert url["FunctionUrl"] == preview[0].outputs()["function_url"]


def test_memory_preview_runs_a_single_sandbox(preview, moto):
    """Each sandbox has its own memory store: one sandbox keeps a preview consistent."""
    concurrency = moto.client("lambda").get_function_concurrency(FunctionName=FUNCTION)
    assert concurrency["ReservedConcurrentExecutions"] == 1


def test_execution_role_carries_the_boundary(preview, moto):
    role = moto.client("iam").get_role(RoleName=FUNCTION)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"].endswith(f":policy/{BOUNDARY}")


def test_destroy_leaves_nothing(moto, tmp_path_factory):
    """A second preview, applied and destroyed: no function, role or log group is left."""
    work = tmp_path_factory.mktemp("preview-destroy")
    bundle = work / "bootstrap.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    root = Root(INFRA / "preview", work, moto)
    root.init()
    variables = ("-var", "pr_number=7", "-var", "store=memory", "-var", f"lambda_zip={bundle}")
    root.apply(*variables)
    name = "order-service-preview-pr-7"
    assert moto.client("lambda").get_function(FunctionName=name)
    root.destroy(*variables)
    assert root.state() == []
    functions = [f["FunctionName"] for f in moto.client("lambda").list_functions()["Functions"]]
    assert name not in functions
    roles = [r["RoleName"] for r in moto.client("iam").list_roles()["Roles"]]
    assert name not in roles
    groups = moto.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
    assert groups["logGroups"] == []
