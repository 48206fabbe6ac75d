"""The preview preflight stops a deploy the account's Lambda concurrency quota cannot hold.

Real plans of infra/preview (terraform against moto), read by .github/scripts/preview-preflight.py
as preview.yml runs it, against account settings in the shape `aws lambda
get-account-settings` returns (moto does not serve that call; what AWS answers is in
infra/README's "verified only in AWS" list).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from conftest import INFRA, ROOT
from moto_rehearsal import MIRROR, Moto, Root

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"no provider mirror at {MIRROR}: hashicorp/aws cannot be installed"
)

SCRIPT = ROOT / ".github" / "scripts" / "preview-preflight.py"


def settings(limit: int, unreserved: int) -> dict:
    return {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": unreserved,
        },
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
    }


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Plan JSON per case: a new memory preview, the same preview once applied, and a new
    postgres preview with the default reservation."""
    moto = Moto()
    work = tmp_path_factory.mktemp("preflight")
    bundle = work / "bootstrap.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    moto.client("iam").create_policy(
        PolicyName="order-service-preview-boundary",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}',
    )
    moto.client("secretsmanager").create_secret(Name="order-service/preview/app", SecretString="{}")
    root = Root(INFRA / "preview", work, moto)
    root.init()

    def plan(*variables: str) -> dict:
        root.run("plan", "-out=tfplan", "-var", f"lambda_zip={bundle}", *variables)
        return json.loads(root.run("show", "-json", "tfplan").stdout)

    memory = ("-var", "pr_number=3", "-var", "store=memory")
    found = {"new memory": plan(*memory)}
    root.apply("-var", f"lambda_zip={bundle}", *memory)
    found["applied memory"] = plan(*memory)
    root.destroy("-var", f"lambda_zip={bundle}", *memory)
    postgres = ("-var", "pr_number=4", "-var", "secret_name=order-service/preview/app")
    found["new postgres"] = plan(*postgres)
    found["new capped postgres"] = plan(*postgres, "-var", "reserved_concurrency=5")
    moto.stop()
    return found, work


def preflight(work, plan: dict, account: dict) -> subprocess.CompletedProcess:
    (work / "plan.json").write_text(json.dumps(plan))
    (work / "settings.json").write_text(json.dumps(account))
    return subprocess.run(
        [sys.executable, SCRIPT, work / "plan.json", work / "settings.json"], capture_output=True, text=True
    )


def test_a_new_account_with_a_quota_of_10_is_stopped_with_one_line_that_says_why(plans):
    found, work = plans
    result = preflight(work, found["new memory"], settings(10, 10))
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1, result.stdout
    (error,) = errors
    for words in ("L-B99A9384", "reserves 1", "is 10 with 10 unreserved", "Service Quotas", "at least 101"):
        assert words in error, error


def test_an_account_with_the_usual_quota_passes(plans):
    found, work = plans
    result = preflight(work, found["new memory"], settings(1000, 1000))
    assert result.returncode == 0, result.stdout
    assert "::error::" not in result.stdout


def test_a_preview_that_already_holds_its_reservation_needs_nothing_more(plans):
    found, work = plans
    # The account's whole quota is taken, yet updating the preview asks for nothing new.
    result = preflight(work, found["applied memory"], settings(101, 100))
    assert result.returncode == 0, result.stdout


def test_a_postgres_preview_reserves_nothing_and_fits_a_new_account(plans):
    found, work = plans
    result = preflight(work, found["new postgres"], settings(10, 10))
    assert result.returncode == 0, result.stdout


def test_the_reservation_counted_is_the_one_the_plan_makes(plans):
    found, work = plans
    (after,) = [
        c["change"]["after"]["reserved_concurrent_executions"]
        for c in found["new capped postgres"]["resource_changes"]
        if c["address"] == 'aws_lambda_function.preview["serve"]'
    ]
    assert after == 5
    assert preflight(work, found["new capped postgres"], settings(105, 105)).returncode == 0
    assert preflight(work, found["new capped postgres"], settings(104, 104)).returncode == 1
