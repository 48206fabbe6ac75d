"""preview-deploy.sh with real terraform against moto: a postgres preview's schema is
migrated by its migrate function before the serving function is created or updated, and a
failed migration stops the deploy with one ::error:: line, the serving function untouched.

moto runs no Lambda code here (that needs docker): without docker its Lambda answers every
invocation with a function error, which is the failure case; with its docker-free backend
it answers every invocation with success, which is the success case. What the migrate
function does when invoked is tested with the real binary and a real PostgreSQL in
lambda-adapter/tests/lambda/migrate.rs. The one stand-in: `aws lambda get-account-settings`,
which moto does not implement, answers a quota of 1000 (the preflight's own test is
infra/tests/test_preview_preflight.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sweep_terraform import (  # noqa: E402
    MIRROR,
    checkout,
    free_port,
    functions,
    job_environment,
    preview_account,
    sh,
)

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None or not MIRROR.is_dir() or shutil.which("aws") is None,
    reason="needs terraform, the provider mirror and the AWS CLI",
)

ACCOUNT_SETTINGS = {
    "AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000},
    "AccountUsage": {"FunctionCount": 0},
}


def set_lambda_docker(moto, use_docker: bool) -> None:
    """moto's Lambda backend: docker (which fails every invocation here) or the docker-free
    one (which succeeds every invocation). Each keeps its own functions."""
    request = urllib.request.Request(
        f"{moto.endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": use_docker}}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="module")
def environment(tmp_path_factory, moto):
    base = tmp_path_factory.mktemp("deploy")
    env = job_environment(base, moto)
    aws = base / "bin" / "aws"
    aws.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1 $2" = "lambda get-account-settings" ]; then\n'
        f"  echo '{json.dumps(ACCOUNT_SETTINGS)}'\n  exit 0\nfi\n"
        f'exec {shutil.which("aws")} "$@"\n'
    )
    aws.chmod(0o755)
    zip_path = base / "bootstrap.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    preview_account(moto, base, "postgres://preview@db/app")
    return base, env, zip_path


def deploy(base: Path, env: dict, zip_path: Path, pr: str):
    repo = checkout(base, f"deploy-{pr}-{free_port()}")
    return sh([".github/scripts/preview-deploy.sh", pr, str(zip_path)], repo, env)


def test_a_failed_migration_stops_the_deploy_before_the_serving_function(environment, moto):
    base, env, zip_path = environment
    set_lambda_docker(moto, True)

    result = deploy(base, env, zip_path, "31")

    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1, result.stdout[-4000:] + result.stderr[-4000:]
    assert errors[0].startswith("::error::migration failed (order-service-preview-pr-31-migrate): ")
    assert functions(moto) == ["order-service-preview-pr-31-migrate"]


def test_a_migrated_preview_is_deployed_and_a_second_push_migrates_again(environment, moto):
    base, env, zip_path = environment
    set_lambda_docker(moto, False)
    try:
        for push in ("first", "second"):
            result = deploy(base, env, zip_path, "32")
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            assert "migrating with order-service-preview-pr-32-migrate" in result.stdout, push
            assert "migrated: " in result.stdout, push
        assert functions(moto) == ["order-service-preview-pr-32", "order-service-preview-pr-32-migrate"]
    finally:
        set_lambda_docker(moto, True)


def test_a_preview_whose_functions_sit_at_their_former_addresses_migrates_first(environment, moto):
    """A preview deployed before the serving and migrate functions shared one resource: its
    state names them aws_lambda_function.preview and aws_lambda_function.migrate[0]. The next
    push still applies and invokes the migrate function alone before the serving function."""
    base, env, zip_path = environment
    set_lambda_docker(moto, False)
    try:
        assert deploy(base, env, zip_path, "33").returncode == 0
        repo = checkout(base, f"former-{free_port()}")
        init = sh([".github/scripts/tf-init.sh", "infra/preview", "preview/pr-33.tfstate"], repo, env)
        assert init.returncode == 0, init.stdout + init.stderr
        for former, current in (
            ("aws_lambda_function.migrate[0]", 'aws_lambda_function.preview["migrate"]'),
            ("aws_lambda_function.preview", 'aws_lambda_function.preview["serve"]'),
        ):
            moved = sh(["terraform", "-chdir=infra/preview", "state", "mv", current, former], repo, env)
            assert moved.returncode == 0, moved.stdout + moved.stderr

        result = deploy(base, env, zip_path, "33")

        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "migrated: " in result.stdout
        ours = [f for f in functions(moto) if f.startswith("order-service-preview-pr-33")]
        assert ours == ["order-service-preview-pr-33", "order-service-preview-pr-33-migrate"]
        listed = sh(["terraform", "-chdir=infra/preview", "state", "list"], repo, env).stdout.split()
        assert 'aws_lambda_function.preview["serve"]' in listed and 'aws_lambda_function.preview["migrate"]' in listed
    finally:
        set_lambda_docker(moto, True)
