"""The preview database role (infra/aws/sql/preview-role.sql) on a real PostgreSQL.

A throwaway cluster from the PostgreSQL binaries holds what the shared database holds: the
staging schema of the application role with an order in it, and previews' schemas. The
preview role must keep to preview_pr_<n> schemas, read nothing else, and open no more than
its connection limit; .github/scripts/preview-schema.sh drops one preview's schema and keeps
the others. Skipped when initdb, pg_ctl or psql is missing.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import pg_cluster
from conftest import INFRA, ROOT
from pg_cluster import psql

SQL = INFRA / "aws" / "sql" / "preview-role.sql"
DROP = ROOT / ".github" / "scripts" / "preview-schema.sh"
LIMIT = 3

pytestmark = pytest.mark.skipif(not pg_cluster.available(), reason="needs the PostgreSQL binaries")


@pytest.fixture(scope="module")
def cluster():
    with pg_cluster.cluster("orders") as base:
        admin = base.format(user="postgres")
        # What staging holds: its own role, schema and orders.
        psql(admin, """
            CREATE ROLE order_service_staging LOGIN;
            CREATE SCHEMA staging AUTHORIZATION order_service_staging;
            SET ROLE order_service_staging;
            CREATE TABLE staging.orders (id bigint PRIMARY KEY, customer_name text);
            INSERT INTO staging.orders VALUES (1, 'John Doe');
            RESET ROLE;
            CREATE TABLE public.public_orders (id bigint);
        """)  # fmt: skip
        result = subprocess.run(
            ["psql", admin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "password=preview-secret",
             "-v", f"connection_limit={LIMIT}", "-f", SQL],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        yield {"admin": admin, "preview": base.format(user="order_service_preview")}


def test_the_role_file_can_run_again_to_change_the_limit(cluster):
    result = subprocess.run(
        ["psql", cluster["admin"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "password=preview-secret",
         "-v", f"connection_limit={LIMIT}", "-f", SQL],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    limit = psql(cluster["admin"], "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'order_service_preview'")
    assert limit.stdout.strip() == str(LIMIT)


def test_a_preview_creates_and_uses_its_own_schema_as_migrate_does(cluster):
    psql(cluster["preview"], """
        CREATE SCHEMA IF NOT EXISTS preview_pr_7;
        SET search_path = preview_pr_7;
        CREATE TABLE orders (id bigint PRIMARY KEY);
        INSERT INTO orders VALUES (1);
    """)  # fmt: skip
    # A second run of migrate finds the schema there.
    psql(cluster["preview"], "CREATE SCHEMA IF NOT EXISTS preview_pr_7")
    assert psql(cluster["preview"], "SELECT count(*) FROM preview_pr_7.orders").stdout.strip() == "1"


@pytest.mark.parametrize(
    "sql, error",
    [
        ("SELECT * FROM staging.orders", "permission denied for schema staging"),
        ("SELECT * FROM public.public_orders", "permission denied for table public_orders"),
        ("CREATE TABLE staging.mine (id int)", "permission denied for schema staging"),
        ("CREATE TABLE public.mine (id int)", "permission denied for schema public"),
        ("CREATE SCHEMA staging_copy", "may create schemas named preview_pr_<n> only"),
        ("CREATE SCHEMA preview_pr_x", "may create schemas named preview_pr_<n> only"),
        ("SET ROLE order_service_staging", "permission denied to set role"),
    ],
)
def test_the_preview_role_reaches_nothing_outside_preview_schemas(cluster, sql, error):
    result = psql(cluster["preview"], sql, ok=False)
    assert result.returncode != 0, f"{sql} succeeded for the preview role"
    assert error in result.stderr, result.stderr


def test_the_preview_role_opens_no_more_than_its_connection_limit(cluster):
    held = [
        subprocess.Popen(["psql", cluster["preview"], "-X", "-q", "-c", "SELECT pg_sleep(30)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(LIMIT)
    ]  # fmt: skip
    try:
        count = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'order_service_preview'"
        for _ in range(100):
            if psql(cluster["admin"], count).stdout.strip() == str(LIMIT):
                break
            subprocess.run(["sleep", "0.1"])
        else:
            pytest.fail("the held connections never opened")
        result = psql(cluster["preview"], "SELECT 1", ok=False)
        assert "too many connections for role" in result.stderr, result.stderr
        # Staging's role is not held back by the previews.
        psql(cluster["admin"].replace("postgres@", "order_service_staging@"), "SELECT 1")
    finally:
        for p in held:
            p.kill()
            p.wait()
        # The server notices a killed client only when pg_sleep ends: end those sessions.
        psql(cluster["admin"], "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'order_service_preview'")


def test_closing_drops_the_schema_of_that_preview_only_and_twice_is_fine(cluster):
    for pr in (21, 22):
        psql(cluster["preview"], f"CREATE SCHEMA preview_pr_{pr}; CREATE TABLE preview_pr_{pr}.orders (id int);")
    env = {**os.environ, "DATABASE_URL": cluster["preview"]}
    env.pop("PREVIEW_SECRET_NAME", None)
    for _ in range(2):
        result = subprocess.run([DROP, "drop", "21"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    schemas = psql(cluster["admin"], "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'preview_pr_2%' ORDER BY 1")
    assert schemas.stdout.split() == ["preview_pr_22"]
    assert psql(cluster["admin"], "SELECT count(*) FROM staging.orders").stdout.strip() == "1"


def test_the_drop_script_refuses_anything_but_a_pull_request_number(cluster):
    env = {**os.environ, "DATABASE_URL": cluster["preview"]}
    result = subprocess.run([DROP, "drop", "1; DROP SCHEMA staging"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
