"""What the chart renders works with the real binary: the same env, ports, probes and secret.

No container runtime here, so the binary runs as a process with exactly the environment the
Deployment would give it. Only what the cluster supplies is added: ports picked free (through
chart values, so the rendered containerPort still drives the probe), and for staging the AWS
settings the EKS pod identity webhook would inject (IRSA web identity), pointed at a local
moto server that stands in for STS and Secrets Manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

import render
from conftest import (
    app_container,
    contract_env_names,
    find,
    free_port,
    rendered_env,
)

VENV_BIN = Path(sys.executable).parent
ISOLATED = {
    # Only what any process gets; nothing from the developer's shell leaks into the service.
    "PATH": os.environ["PATH"],
    "HOME": tempfile.gettempdir(),
}


def request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Message]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def get_status(url: str) -> int:
    return request("GET", url)[0]


@contextlib.contextmanager
def running(
    binary: Path, env: dict[str, str], workdir: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `order-service` (serve) and wait until /health answers."""
    log = (workdir / "service.log").open("wb")
    proc = subprocess.Popen(
        [str(binary)], env={**ISOLATED, **env}, cwd=workdir, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        log_text = (workdir / "service.log").read_text
        while True:
            if proc.poll() is not None:
                pytest.fail(f"order-service exited with {proc.returncode}:\n{log_text()}")
            with contextlib.suppress(OSError):
                if get_status(f"http://127.0.0.1:{port}/health") == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"order-service did not answer /health:\n{log_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- environment contract -------------------------------------------------------------------


def test_rendered_env_names_are_in_the_contract(objects: list[dict[str, Any]]) -> None:
    assert set(rendered_env(objects)) <= contract_env_names()


def test_check_config_accepts_the_rendered_env(
    objects: list[dict[str, Any]], binary: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(binary), "check-config"],
        env={**ISOLATED, **rendered_env(objects)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config ok" in result.stdout


def test_check_config_rejects_what_the_binary_cannot_read(binary: Path, tmp_path: Path) -> None:
    env = {**rendered_env(render.render("default")), "LOG_LEVEL": "verbose"}
    result = subprocess.run(
        [str(binary), "check-config"],
        env={**ISOLATED, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid configuration: LOG_LEVEL" in result.stdout + result.stderr


# --- probes, ports and scraping against the running binary ----------------------------------


def test_probes_and_metrics_answer_on_the_rendered_ports(binary: Path, tmp_path: Path) -> None:
    objects = render.render("default", {"ports": {"http": free_port(), "metrics": free_port()}})
    container = app_container(objects)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    with running(binary, rendered_env(objects), tmp_path, named["http"]):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get_status(f"http://127.0.0.1:{named[get['port']]}{get['path']}") == 200, probe

        # ServiceMonitor port -> Service port of that name -> its targetPort -> container port.
        (endpoint,) = find(objects, "ServiceMonitor")["spec"]["endpoints"]
        service_port = next(
            p for p in find(objects, "Service")["spec"]["ports"] if p["name"] == endpoint["port"]
        )
        scrape_url = f"http://127.0.0.1:{named[service_port['targetPort']]}{endpoint['path']}"
        status, body, headers = request("GET", scrape_url)
        assert status == 200
        assert headers.get("Content-Type", "").startswith("text/plain")
        exposition = body.decode()
        assert "http_requests_total" in exposition and "build_info" in exposition
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr

        assert get_status(f"http://127.0.0.1:{named['http']}/metrics") == 404, (
            "metrics leak onto the API port"
        )


def logged_at(log: str, message: str) -> float:
    """When the service logged `message` (its JSON lines), by its own clock, in epoch seconds."""
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("message") == message:
                return datetime.fromisoformat(event["timestamp"]).timestamp()
    pytest.fail(f"no {message!r} line in the service log:\n{log}")


def test_sigterm_drains_within_the_grace_period(binary: Path, tmp_path: Path) -> None:
    http = free_port()
    objects = render.render(
        "default",
        {
            "ports": {"http": http, "metrics": free_port()},
            "shutdown": {"drainSeconds": 4, "graceSeconds": 5},
            "terminationGracePeriodSeconds": 15,
        },
    )
    grace_period = find(objects, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    with running(binary, rendered_env(objects), tmp_path, http) as proc:
        proc.send_signal(signal.SIGTERM)
        # The endpoints controller and the ALB must see "not ready" while the pod still
        # serves: /ready answers 503 before the service stops accepting. Polled without a tight
        # deadline; a refused connection before the 503 means it never reported not-ready.
        deadline = time.monotonic() + 60
        while True:
            try:
                status = get_status(f"http://127.0.0.1:{http}/ready")
            except OSError as error:
                pytest.fail(f"/ready unreachable ({error}) before it ever answered 503")
            if status == 503:
                break
            assert status == 200, f"/ready answered {status} while draining"
            if time.monotonic() > deadline:
                pytest.fail("/ready still answers 200 60 s after SIGTERM")
            time.sleep(0.1)
        assert get_status(f"http://127.0.0.1:{http}/health") == 200
        proc.wait(timeout=60)
        assert proc.returncode == 0
    # The whole sequence by the service's own clock, from the signal to the exit, is what
    # Kubernetes allows between SIGTERM and SIGKILL.
    log = (tmp_path / "service.log").read_text()
    took = logged_at(log, "stopped") - logged_at(log, "draining")
    assert 4 <= took < grace_period, f"drained in {took:.1f} s; grace period {grace_period} s"


# --- staging as deployed: Secrets Manager secret -> PostgreSQL ------------------------------


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port; yields its URL."""
    if not shutil.which("initdb"):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="order-service-pg-"))
    # initdb refuses to run as root; the postgres account owns the cluster instead.
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    try:
        subprocess.run(
            [
                *as_owner,
                "initdb",
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_owner,
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(base / "postgres.log"),
                "-w",
                "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_owner, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def secrets_manager() -> Iterator[str]:
    """A moto server standing in for AWS Secrets Manager; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return get_status(f"{endpoint}/moto-api/") == 200
            except OSError:
                return False

        wait_for(up, 30, "moto_server")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_staging_env_serves_from_the_secret_and_postgres(
    binary: Path, tmp_path: Path, postgres: str, secrets_manager: str
) -> None:
    import boto3

    region, api_key, read_key = "eu-west-1", "staging-smoke-key", "staging-read-key"
    values = {"ports": {"http": free_port(), "metrics": free_port()}}
    objects = render.render("staging", values)
    env = rendered_env(objects)
    boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=secrets_manager,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_secret(
        Name=env["AWS_SECRET_NAME"],
        SecretString=json.dumps(
            {
                "database_url": postgres,
                "api_keys": [api_key, {"id": "reports", "key": read_key, "scopes": ["read"]}],
            }
        ),
    )
    # What the EKS pod identity webhook injects for the ServiceAccount's role (IRSA): no static
    # keys, a projected token exchanged through STS. moto stands in for STS and Secrets Manager.
    token = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("header.payload.signature")
    account = find(objects, "ServiceAccount", "order-service")
    cluster = {
        "AWS_ROLE_ARN": account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        "AWS_ENDPOINT_URL": secrets_manager,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    # The pre-install hook first: the Job's own command and environment, as the cluster runs
    # it; the service refuses a schema older than it needs.
    job = find(objects, "Job")
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    job_env = {e["name"]: e["value"] for e in migrate["env"]}
    done = subprocess.run(
        [str(binary), *migrate["args"]],
        env={**ISOLATED, **job_env, **cluster},
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert "migrated from version 0 to" in done.stdout.decode(), done.stdout.decode()
    http = int(env["PORT"])
    with running(binary, {**env, **cluster}, tmp_path, http):
        base = f"http://127.0.0.1:{http}"
        wait_for(lambda: get_status(f"{base}/ready") == 200, 30, "/ready to answer 200")
        order = {
            "customer_name": "Ada Lovelace",
            "items": [{"product_id": 7, "name": "Analytical Engine", "quantity": 1, "price": 12.5}],
            "shipping_address": "12 St James's Square, London",
        }
        # The key comes from the secret: staging is not `local`, so writes need it.
        assert request("POST", f"{base}/orders", order)[0] == 401
        status, body, _ = request(
            "POST", f"{base}/orders", order, {"Authorization": f"Bearer {api_key}"}
        )
        assert status == 201, body
        created = json.loads(body)
        # Orders are customer data: reads need a key too, and a read-only key cannot write.
        assert request("GET", f"{base}/orders/{created['id']}")[0] == 401
        read_only = {"Authorization": f"Bearer {read_key}"}
        assert request("POST", f"{base}/orders", order, read_only)[0] == 403
        status, body, _ = request("GET", f"{base}/orders/{created['id']}", None, read_only)
        assert status == 200 and json.loads(body)["customer_name"] == "Ada Lovelace"


# --- the deploy roles' Kubernetes permissions (infra/addons) ---------------------------------

ADDONS = Path(__file__).resolve().parents[2] / "infra" / "addons"


def deployer_rules() -> list[dict[str, list[str]]]:
    """The rules of the Role the deploy roles get in their namespace, as Terraform defines
    it (kubernetes_role_v1.deployer in infra/addons): the one list of what a deploy may do."""
    import hcl2

    rules = []
    for path in sorted(ADDONS.glob("*.tf")):
        with path.open() as f:
            document = hcl2.load(f)
        for block in document.get("resource", []):
            role = block.get("kubernetes_role_v1", {}).get("deployer")
            if not role:
                continue
            for rule in role["rule"]:
                rules.append(
                    {
                        key: [item for item in rule[key][0]]
                        for key in ("api_groups", "resources", "verbs")
                    }
                )
    assert rules, "infra/addons defines no kubernetes_role_v1.deployer"
    return rules


def resource_of(kind: str) -> str:
    """The plural resource name the API server (and RBAC) uses for a kind."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def allowed(rules: list[dict[str, list[str]]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["api_groups"] and resource in r["resources"] and verb in r["verbs"]
        for r in rules
    )


HELM_VERBS = ("get", "list", "create", "update", "patch", "delete")


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_deployer_role_allows_every_object_the_chart_renders(environment: str) -> None:
    """helm --atomic rolls the whole deploy back when one object is forbidden."""
    rules = deployer_rules()
    _, namespace = render.ENVIRONMENTS[environment]
    for obj in render.render(environment):
        api_version = obj["apiVersion"]
        group = api_version.split("/")[0] if "/" in api_version else ""
        resource = resource_of(obj["kind"])
        assert obj["metadata"].get("namespace", namespace) == namespace, (
            f"{obj['kind']} {obj['metadata']['name']} leaves the release namespace; the deployer "
            "Role is namespaced"
        )
        for verb in HELM_VERBS:
            assert allowed(rules, group, resource, verb), (
                f"the deployer Role does not allow {verb} on {resource}.{group or 'core'} "
                f"({obj['kind']} {obj['metadata']['name']})"
            )


def test_deployer_role_lets_helm_keep_its_history_and_run_tests() -> None:
    rules = deployer_rules()
    for verb in HELM_VERBS:
        assert allowed(rules, "", "secrets", verb), "helm stores releases as Secrets"
    assert allowed(rules, "", "pods/log", "get"), "helm test prints the test pod's log"
    assert allowed(rules, "apps", "replicasets", "watch"), "helm --wait follows ReplicaSets"


def test_deployer_role_grants_nothing_cluster_wide_or_wildcarded() -> None:
    for rule in deployer_rules():
        for key in ("api_groups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert not {"roles", "rolebindings", "namespaces"} & set(rule["resources"])


def test_resource_names_follow_the_api() -> None:
    assert [
        resource_of(k)
        for k in ("NetworkPolicy", "Ingress", "HorizontalPodAutoscaler", "ConfigMap", "Pod")
    ] == ["networkpolicies", "ingresses", "horizontalpodautoscalers", "configmaps", "pods"]
