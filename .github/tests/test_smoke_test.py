"""The smoke test must fail, check by check, when a service breaks the contract.

The passing side is proven against the real binaries by .ci/stages/workflows.sh; this
file serves a deliberately wrong API and checks that every breach is reported.
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
        "FAIL GET /orders is a bare JSON array",
        "FAIL GET /orders/1 sample order",
        "FAIL GET missing order is a problem+json 404",
        "FAIL POST /orders without a key is refused",
        "FAIL POST /orders then read it back",
    }, result.stdout
    assert "ok   ready" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "smoke: 1 passed, 7 failed"


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
