"""The nightly sweep with real terraform: postgres previews applied to moto's S3, Lambda and
VPC, each with its schema in a real PostgreSQL, swept: the closed ones destroyed with their
state objects and schemas, the open one kept, a second sweep doing nothing.

Each preview is applied the way preview.yml does it, from a fresh copy of the repository
(one runner per pull request): tf-init.sh with the S3 backend, then terraform apply. The
sweep then runs sweep-previews.sh unchanged in one more fresh copy, where it initialises
the same directory once per preview, which is what "Backend configuration changed" broke.
Only `gh` is a stand-in: GitHub's API cannot run here; it answers each pull request's state.

Needs terraform, the provider mirror (TF_PROVIDER_MIRROR, default /opt/tf-plugins), the
AWS CLI, moto, jq and the PostgreSQL binaries; skipped when one is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra" / "tests"))
import pg_cluster  # noqa: E402
from pg_cluster import psql  # noqa: E402

MIRROR = Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
REGION = "eu-west-1"
BUCKET = "order-service-tfstate"
# pull request -> state GitHub reports for it
PULL_REQUESTS = {"11": "OPEN", "12": "CLOSED", "13": "MERGED"}

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None or not MIRROR.is_dir() or shutil.which("aws") is None
    or shutil.which("jq") is None or not pg_cluster.available(),
    reason="needs terraform, the provider mirror, the AWS CLI, jq and PostgreSQL",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checkout(base: Path, name: str) -> Path:
    """A fresh copy of what the jobs use: infra/preview and .github/scripts."""
    repo = base / name
    (repo / "infra" / "preview").mkdir(parents=True)
    for path in (ROOT / "infra" / "preview").glob("*.tf"):
        shutil.copy(path, repo / "infra" / "preview")
    shutil.copy(ROOT / "infra" / "preview" / ".terraform.lock.hcl", repo / "infra" / "preview")
    shutil.copytree(ROOT / ".github" / "scripts", repo / ".github" / "scripts")
    # The workflows' "Preview settings" step: TFVARS_INFRA_PREVIEW into infra/preview.
    if (base / "ci.auto.tfvars").exists():
        shutil.copy(base / "ci.auto.tfvars", repo / "infra" / "preview")
    return repo


@pytest.fixture(scope="module")
def database():
    """The shared database with the preview role (infra/aws/sql/preview-role.sql)."""
    with pg_cluster.cluster("orders") as url:
        result = subprocess.run(
            ["psql", url.format(user="postgres"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "password=x",
             "-v", "connection_limit=20", "-f", ROOT / "infra" / "aws" / "sql" / "preview-role.sql"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        yield url


def schemas(url: str) -> list[str]:
    rows = psql(url.format(user="postgres"), "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'preview_pr_%' ORDER BY 1")
    return rows.stdout.split()


def job_environment(base: Path, moto) -> dict:
    """What the preview jobs run with, pointed at moto: terraform from the provider mirror,
    the S3 backend and the AWS CLI on moto, and `base/bin` first on PATH for stand-ins."""
    (base / "terraformrc").write_text(
        'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % MIRROR
    )
    # The S3 backend reaches moto by path-style URLs on loopback; the workflows pass only
    # bucket, key and region, so the rest comes in through TF_CLI_ARGS_init.
    (base / "moto.s3.tfbackend").write_text(
        f'endpoints = {{ s3 = "{moto.endpoint}" }}\n'
        "use_path_style = true\n"
        "skip_credentials_validation = true\n"
        "skip_requesting_account_id = true\n"
        "skip_metadata_api_check = true\n"
    )
    (base / "bin").mkdir()
    env = {
        **os.environ,
        "PATH": f"{base / 'bin'}:{os.environ['PATH']}",
        "TF_CLI_CONFIG_FILE": str(base / "terraformrc"),
        "TF_CLI_ARGS_init": f"-backend-config={base / 'moto.s3.tfbackend'}",
        "TF_IN_AUTOMATION": "true",
        "TF_INPUT": "false",
        "TF_STATE_BUCKET": BUCKET,
        # What preview-name.sh reads from the preview role's ARN in the workflows.
        "TF_VAR_name": "order-service",
        **moto.env(),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name in ("AWS_PROFILE", "TF_DATA_DIR", "TF_PLUGIN_CACHE_DIR"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def environment(tmp_path_factory, moto, database):
    base = tmp_path_factory.mktemp("sweep")
    env = {
        **job_environment(base, moto),
        "GH_REPO": "acme/order-service",
        "GITHUB_STEP_SUMMARY": str(base / "summary.md"),
    }
    bin_dir = base / "bin"
    cases = "".join(f"  {pr}) echo {state};;\n" for pr, state in PULL_REQUESTS.items())
    gh = bin_dir / "gh"
    gh.write_text(f'#!/usr/bin/env bash\n# gh pr view N --repo R --json state --jq .state\ncase "$3" in\n{cases}  *) exit 1;;\nesac\n')
    gh.chmod(0o755)
    zip_path = base / "bootstrap.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    preview_account(moto, base, database.format(user="order_service_preview"))
    return base, env, zip_path


def preview_account(moto, base: Path, database_url: str) -> None:
    """What infra/aws gives every postgres preview, made in moto: the state bucket, the
    preview network, the database secret (pointing at `database_url`) and the permissions
    boundary; and, as `base/ci.auto.tfvars`, what its preview_tfvars output hands the jobs
    (TFVARS_INFRA_PREVIEW), which checkout() copies into infra/preview."""
    moto.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="order-service-preview", Description="p", VpcId=vpc)["GroupId"]
    moto.client("secretsmanager").create_secret(
        Name="order-service/preview/database", SecretString=json.dumps({"database_url": database_url})
    )
    (base / "ci.auto.tfvars").write_text(
        'store              = "postgres"\n'
        'secret_name        = "order-service/preview/database"\n'
        f'subnet_ids         = ["{subnet}"]\n'
        f'security_group_ids = ["{group}"]\n'
    )
    # The preview roles must carry the boundary.
    moto.client("iam").create_policy(
        PolicyName="order-service-preview-boundary",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}',
    )


def sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


def deploy_preview(base: Path, env: dict, zip_path: Path, pr: str, database: str) -> None:
    """What preview.yml's deploy job runs, in a fresh checkout (the migration stands in as
    the schema it creates, as the preview role)."""
    repo = checkout(base, f"deploy-{pr}")
    psql(database.format(user="order_service_preview"), f"CREATE SCHEMA preview_pr_{pr}; CREATE TABLE preview_pr_{pr}.orders (id int);")
    init = sh([".github/scripts/tf-init.sh", "infra/preview", f"preview/pr-{pr}.tfstate"], repo, env)
    assert init.returncode == 0, init.stdout + init.stderr
    apply = sh(
        [
            "terraform", "-chdir=infra/preview", "apply", "-auto-approve", "-no-color",
            "-var", f"pr_number={pr}", "-var", f"region={REGION}", "-var", f"lambda_zip={zip_path}",
        ],
        repo,
        env,
    )
    assert apply.returncode == 0, apply.stdout[-4000:] + apply.stderr[-4000:]


def state_keys(moto) -> list[str]:
    listing = moto.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="preview/")
    return sorted(o["Key"] for o in listing.get("Contents", []))


def functions(moto) -> list[str]:
    return sorted(f["FunctionName"] for f in moto.client("lambda").list_functions()["Functions"])


def roles(moto) -> list[str]:
    return sorted(r["RoleName"] for r in moto.client("iam").list_roles()["Roles"])


def test_the_sweep_destroys_every_closed_preview_and_keeps_the_open_one(environment, moto, database):
    base, env, zip_path = environment
    for pr in PULL_REQUESTS:
        deploy_preview(base, env, zip_path, pr, database)
    assert schemas(database) == [f"preview_pr_{pr}" for pr in sorted(PULL_REQUESTS)]
    names = {pr: f"order-service-preview-pr-{pr}" for pr in PULL_REQUESTS}
    # Each postgres preview has its serving function and its migrate function.
    assert functions(moto) == sorted(f"{n}{suffix}" for n in names.values() for suffix in ("", "-migrate"))
    assert state_keys(moto) == sorted(f"preview/pr-{pr}.tfstate" for pr in PULL_REQUESTS)

    repo = checkout(base, "sweep")
    result = sh([".github/scripts/sweep-previews.sh"], repo, {**env, "DRY_RUN": "false"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "sweep: 2 destroyed, 0 failed" in result.stdout, output[-6000:]
    assert "pr-11: open, kept" in result.stdout

    # Gone from AWS and from the bucket; the open preview untouched.
    assert functions(moto) == [names["11"], f"{names['11']}-migrate"]
    assert [r for r in roles(moto) if r.startswith("order-service-preview-")] == [names["11"]]
    assert state_keys(moto) == ["preview/pr-11.tfstate"]
    groups = moto.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/order-service-preview-")
    assert [g["logGroupName"] for g in groups["logGroups"]] == [f"/aws/lambda/{names['11']}"]
    # The closed previews' schemas, with their tables, are gone; the open one's is kept.
    assert schemas(database) == ["preview_pr_11"]

    # A second sweep has nothing left to do.
    again = sh([".github/scripts/sweep-previews.sh"], repo, {**env, "DRY_RUN": "false"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sweep: 0 destroyed, 0 failed" in again.stdout
    assert schemas(database) == ["preview_pr_11"]
