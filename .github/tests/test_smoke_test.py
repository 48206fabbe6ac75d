"""The smoke test must fail, check by check, when a service breaks the contract.

The passing side is proven against the real binaries by .ci/stages/workflows.sh (the container
binary) and .ci/stages/lambda.sh (`cargo lambda watch`); this file serves a deliberately wrong
API and checks that every breach is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parents[1] / "scripts" / "smoke-test.py"


class WrongService(BaseHTTPRequestHandler):
    """Looks like the order service at a glance; each answer breaks one rule."""

    ROUTES = {
        "/ready": (200, "application/json", {"status": "ready"}),
        "/": (200, "application/json", {"message": "Welcome to the Orders API"}),
        "/health": (200, "application/json", {"status": "ok"}),
        "/orders": (200, "application/json", {"items": []}),
        "/orders/1": (200, "application/json", {"id": 1, "customer_name": "John Doe", "total_amount": 129.98}),
    }

    def do_GET(self):  # noqa: N802 (http.server naming)
        # A missing order answered the FastAPI way but with the wrong media type.
        status, ctype, body = self.ROUTES.get(
            self.path, (404, "application/json", {"detail": "Order not found", "status": 404})
        )
        self.send(status, ctype, body)

    def do_POST(self):  # noqa: N802
        # Accepts writes without any key.
        self.send(201, "application/json", {"id": "x"})

    def send(self, status, ctype, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def wrong_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), WrongService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_smoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_reports_every_broken_check(wrong_service):
    result = run_smoke(wrong_service, "--api-key", "k", "--deadline", "5")
    assert result.returncode == 1, result.stdout
    failed = {line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("FAIL ")}
    assert failed == {
        "FAIL GET / welcome message",
        "FAIL GET /health",
        "FAIL GET /orders without a key is refused",
        "FAIL GET /orders is a bare JSON array",
        "FAIL GET /orders/1 sample order",
        "FAIL GET missing order is a problem+json 404",
        "FAIL POST /orders without a key is refused",
        "FAIL POST /orders then read it back",
    }, result.stdout
    assert "ok   ready" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "smoke: 1 passed, 8 failed"


def test_gives_up_at_the_deadline_when_nothing_answers():
    # Port 9 (discard) on loopback: nothing listens there on a test machine.
    result = run_smoke("http://127.0.0.1:9", "--deadline", "3", "--no-expect-sample-data")
    assert result.returncode == 1
    assert "FAIL ready: GET /ready never returned 200 before the deadline" in result.stdout
    assert result.stdout.rstrip().endswith("smoke: 0 passed, 5 failed")


def test_rejects_a_url_without_scheme():
    result = run_smoke("localhost:8000")
    assert result.returncode == 2
    assert "BASE_URL must start with http:// or https://" in result.stderr


# --- through the load balancer before DNS knows the host (--resolve) ----------------------

HOST = "staging.order-service.test"  # .test never resolves: only --resolve can reach it


class LoadBalancer(BaseHTTPRequestHandler):
    """An HTTPS listener like the ALB's: a rule for the Ingress host, a fixed 404 otherwise.

    Behind the rule, the read-only contract of a Postgres-backed deployment."""

    hosts_seen: list[str] = []
    ROUTES = {
        "/ready": (200, "application/json", {"status": "ready"}),
        "/": (200, "application/json", {"message": "Welcome to the Order Service API - staging"}),
        "/health": (200, "application/json", {"status": "OK"}),
        "/orders": (200, "application/json", []),
    }

    def do_GET(self):  # noqa: N802
        host = self.headers.get("Host", "")
        self.hosts_seen.append(host)
        if host.split(":")[0] != HOST:
            self.send(404, "text/plain", "no rule for this host")
            return
        status, ctype, body = self.ROUTES.get(
            self.path, (404, "application/problem+json", {"detail": "Order not found", "status": 404, "title": "Not Found"})
        )
        self.send(status, ctype, body)

    send = WrongService.send

    def log_message(self, *args):
        pass


@pytest.fixture
def load_balancer(tmp_path):
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
        check=True, capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoadBalancer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    LoadBalancer.hosts_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert, sni
    server.shutdown()


def run_smoke_trusting(cert, *args: str) -> subprocess.CompletedProcess:
    # The certificate is trusted the way a runner trusts ACM's: through the default store.
    import os

    return subprocess.run(
        [sys.executable, str(SMOKE), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SSL_CERT_FILE": str(cert)},
    )


def test_resolve_reaches_the_load_balancer_with_the_real_host_name(load_balancer):
    port, cert, sni = load_balancer
    result = run_smoke_trusting(
        cert, f"https://{HOST}:{port}", "--resolve", f"{HOST}:{port}:127.0.0.1",
        "--environment", "staging", "--no-expect-sample-data", "--deadline", "10",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("smoke: 5 passed, 0 failed")
    assert set(sni) == {HOST}, "TLS must name the real host (SNI), not the balancer's address"
    assert {h.split(":")[0] for h in LoadBalancer.hosts_seen} == {HOST}


def test_without_resolve_the_unpublished_host_is_unreachable(load_balancer):
    # What the first deploy saw before: the name is not in DNS yet.
    port, cert, _ = load_balancer
    result = run_smoke_trusting(cert, f"https://{HOST}:{port}", "--no-expect-sample-data", "--deadline", "3")
    assert result.returncode == 1
    assert "never returned 200" in result.stdout


def test_the_balancer_address_alone_gets_no_rule_and_fails_tls(load_balancer):
    # Calling the ALB by its own name without the host: the certificate does not match
    # and the listener has no rule for it, so --resolve is the only way in.
    import ssl
    import urllib.error
    import urllib.request

    port, cert, _ = load_balancer
    result = run_smoke_trusting(cert, f"https://127.0.0.1:{port}", "--no-expect-sample-data", "--deadline", "3")
    assert result.returncode == 1
    # Failed on the certificate (it names the host, not the address), before any request.
    assert "CERTIFICATE_VERIFY_FAILED" in result.stdout, result.stdout
    assert "IP address mismatch" in result.stdout, result.stdout
    assert LoadBalancer.hosts_seen == [], "a request got past TLS"
    # And past TLS, the address has no listener rule.
    unverified = ssl._create_unverified_context()
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/ready", context=unverified, timeout=10)
    assert answer.value.code == 404
    assert json.loads(answer.value.read()) == "no rule for this host"


@pytest.mark.parametrize("value", ["host-only", "host:443", "host:https:1.2.3.4", ":443:1.2.3.4"])
def test_resolve_rejects_malformed_values(value):
    result = run_smoke("https://example.test", "--resolve", value)
    assert result.returncode == 2
    assert "HOST:PORT:ADDRESS" in result.stderr
