"""Connection limits as the chart deploys them: the ALB's idle timeout and the pod's keep-alive
idle timeout stated as one pair, and an in-flight bound the pod's memory can hold."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import render
from conftest import app_container, find, free_port, rendered_env

ANNOTATION = "alb.ingress.kubernetes.io/load-balancer-attributes"
INGRESS_ON = {
    "ingress": {
        "enabled": True,
        "host": "orders.example.com",
        "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/example",
    }
}
# The binary's defaults, for settings the chart leaves unset.
BINARY_BODY_LIMIT = 65536


def with_ingress(environment: str) -> list[dict[str, Any]]:
    return render.render(environment, INGRESS_ON)


def alb_idle_timeout(objects: list[dict[str, Any]]) -> int:
    ingress = find(objects, "Ingress")
    attributes = ingress["metadata"]["annotations"][ANNOTATION]
    match = re.fullmatch(r"idle_timeout\.timeout_seconds=(\d+)", attributes)
    assert match, f"{ANNOTATION}: {attributes!r}"
    return int(match.group(1))


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


@pytest.mark.parametrize("environment", list(render.ENVIRONMENTS))
def test_pod_keeps_idle_connections_longer_than_the_alb(environment: str) -> None:
    """AWS: a target's keep-alive timeout must exceed the load balancer's idle timeout, or the
    ALB may send a request on a connection the target is closing, and answer 502."""
    objects = with_ingress(environment)
    env = rendered_env(objects)
    assert int(env["KEEP_ALIVE_TIMEOUT_SECONDS"]) > alb_idle_timeout(objects)


@pytest.mark.parametrize("environment", list(render.ENVIRONMENTS))
def test_in_flight_bound_fits_the_memory_limit(environment: str) -> None:
    """Every in-flight request may buffer a body up to the limit: all of them together must
    leave the pod at most half its memory limit, or shedding comes after the OOM kill."""
    objects = render.render(environment)
    env = rendered_env(objects)
    bodies = int(env["MAX_IN_FLIGHT_REQUESTS"]) * int(
        env.get("BODY_LIMIT_BYTES", BINARY_BODY_LIMIT)
    )
    limit = memory_bytes(app_container(objects)["resources"]["limits"]["memory"])
    assert bodies <= limit // 2, f"{bodies} bytes of bodies against a {limit}-byte limit"


@pytest.mark.parametrize("keep_alive", [30, 60])
def test_chart_refuses_a_keep_alive_not_above_the_alb_idle_timeout(keep_alive: int) -> None:
    values = {**INGRESS_ON, "connections": {"keepAliveTimeoutSeconds": keep_alive}}
    with pytest.raises(helm.HelmError, match="keepAliveTimeoutSeconds"):
        render.render("production", values)


def test_binary_holds_an_idle_connection_past_the_header_timeout(
    binary: Path, tmp_path: Path
) -> None:
    """The rendered settings, run for real: an idle keep-alive connection outlives the header
    read timeout (it would be closed after it if the two were the same timer)."""
    env = rendered_env(render.render("production"))
    port = free_port()
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "METRICS_PORT": str(free_port()),
            "SECRETS_MANAGER_ENABLED": "false",
            "STORE": "memory",
            "HEADER_READ_TIMEOUT_MS": "300",
            "SHUTDOWN_DRAIN_SECONDS": "0",
        }
    )
    service = subprocess.Popen(
        [str(binary)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.05)
        with conn:
            request = b"GET /health HTTP/1.1\r\nHost: pod\r\n\r\n"
            conn.sendall(request)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(1.5)  # five header timeouts
            conn.sendall(request)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200"), "idle connection was closed"
    finally:
        service.terminate()
        service.wait(timeout=30)
