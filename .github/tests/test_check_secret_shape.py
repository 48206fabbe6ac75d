"""The deploy preflight against moto's Secrets Manager: a usable secret passes, every
unusable one fails with one line that says what to create, and no secret value is ever
printed. The script runs unchanged with the AWS CLI, pointed at moto.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check-secret-shape.py"
PASSWORD = "hunter2-never-printed"
KEY = "api-key-never-printed"

pytestmark = pytest.mark.skipif(shutil.which("aws") is None, reason="needs the AWS CLI")


def preflight(moto, name: str, store: str = "postgres") -> subprocess.CompletedProcess:
    env = {**os.environ, **moto.env()}
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        ["python3", str(SCRIPT), name, "--store", store], env=env, capture_output=True, text=True, check=False
    )


def secret(moto, name: str, value: dict | str | None) -> str:
    client = moto.client("secretsmanager")
    if value is None:
        client.create_secret(Name=name)
    else:
        client.create_secret(Name=name, SecretString=value if isinstance(value, str) else json.dumps(value))
    return name


def assert_one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("::error::preflight: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert PASSWORD not in result.stdout + result.stderr
    assert KEY not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "value",
    [
        {"database_url": f"postgres://app:{PASSWORD}@db:5432/orders", "api_keys": [KEY]},
        {"engine": "postgres", "host": "db", "port": 5432, "username": "app", "password": PASSWORD, "dbname": "o", "api_keys": [KEY]},
    ],
    ids=["database_url", "rds-format"],
)
def test_a_usable_secret_passes_and_shows_key_names_only(moto, value):
    name = secret(moto, f"order-service/ok-{len(value)}/app", value)
    result = preflight(moto, name)
    assert result.returncode == 0, result.stderr
    assert "api_keys" in result.stdout and ": ok" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr


def test_a_missing_secret_says_to_create_it(moto):
    assert_one_line_failure(preflight(moto, "order-service/nowhere/app"), "does not exist", "put-secret-value")


def test_a_secret_without_a_value_says_what_to_put(moto):
    name = secret(moto, "order-service/empty/app", None)
    assert_one_line_failure(preflight(moto, name), "has no value yet", "put-secret-value --secret-id order-service/empty/app")


@pytest.mark.parametrize(
    "value, needle",
    [
        ({"api_keys": [KEY]}, "no database settings for store=postgres: add database_url"),
        ({"database_url": "", "api_keys": [KEY]}, "database_url must be a non-empty string"),
        ({"host": "db", "password": PASSWORD, "api_keys": [KEY]}, "the RDS format needs username"),
        ({"database_url": f"postgres://app:{PASSWORD}@db/o"}, "has no api_keys"),
        ({"database_url": f"postgres://app:{PASSWORD}@db/o", "api_keys": KEY}, "api_keys must be an array of strings"),
        (
            {"database_url": f"postgres://app:{PASSWORD}@db/o", "api_keys": [{"id": "shop", "key": KEY, "scopes": ["admin"]}]},
            "api_keys must be an array of strings or of objects",
        ),
        ({}, "no database settings"),
        ("not json", "is not JSON"),
        ("[1, 2]", "not an object"),
    ],
    ids=["no-database", "empty-url", "rds-incomplete", "no-api-keys", "api-keys-string", "api-key-bad-scope", "empty-object", "not-json", "array"],
)
def test_an_unusable_secret_fails_with_one_line(moto, value, needle):
    name = secret(moto, f"order-service/bad-{abs(hash(needle)) % 10**8}/app", value)
    assert_one_line_failure(preflight(moto, name), needle, "it has keys" if isinstance(value, dict) else "")


def test_keys_with_ids_and_scopes_are_accepted(moto):
    keys = [KEY, {"id": "reports", "key": KEY + "-r", "scopes": ["read"]}]
    name = secret(moto, "order-service/scoped/app", {"api_keys": keys})
    result = preflight(moto, name, store="memory")
    assert result.returncode == 0, result.stdout + result.stderr
    assert KEY not in result.stdout + result.stderr


def test_the_memory_store_needs_no_database(moto):
    name = secret(moto, "order-service/memory/app", {"api_keys": [KEY]})
    assert preflight(moto, name, store="memory").returncode == 0
