"""Shared fixtures: rendered objects, the real order-service binary, free ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import render  # noqa: E402  (sibling module, importable once the path is set)

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "CONTRACT.md"


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of a kind (and name), failing the test when it is absent or ambiguous."""
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected exactly one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def app_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def rendered_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as name -> value; every entry must be a plain value."""
    env = {}
    for entry in app_container(objects)["env"]:
        assert "value" in entry, f"{entry['name']} is not a plain value: {entry}"
        env[entry["name"]] = entry["value"]
    return env


def contract_env_names() -> set[str]:
    """Variable names from CONTRACT.md's table "Environment variables read by `Config`"."""
    text = CONTRACT.read_text()
    section = text.split("## Environment variables read by `Config`", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", section, flags=re.M))
    assert len(names) > 10, "could not parse the environment table in CONTRACT.md"
    return names


def contract_metric_names() -> set[str]:
    """Metric names listed in CONTRACT.md's "Metrics" section."""
    text = CONTRACT.read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([a-z_:][a-z0-9_:]*)(?:\{[^`]*\})?`", section))
    assert "http_requests_total" in names, "could not parse the metrics in CONTRACT.md"
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", params=list(render.ENVIRONMENTS))
def environment(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def objects(environment: str) -> list[dict[str, Any]]:
    return render.render(environment)


@pytest.fixture(scope="session")
def binary() -> Path:
    """The debug build of the container binary, built from the workspace if needed."""
    explicit = os.environ.get("ORDER_SERVICE_BIN")
    if explicit:
        return Path(explicit)
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", "order-service"], cwd=ROOT, check=True
    )
    target = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")  # absolute paths win over ROOT
    path = target / "debug" / "order-service"
    assert path.is_file(), f"cargo build did not produce {path}"
    return path
