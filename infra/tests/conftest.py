"""Helpers shared by the infra tests: parse Terraform with python-hcl2."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import hcl2
import pytest

INFRA = pathlib.Path(__file__).resolve().parents[1]
ROOT = INFRA.parent


def unwrap(value: Any) -> Any:
    """python-hcl2 wraps each attribute value in a one-element list; take the value out."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def load_root(directory: pathlib.Path) -> dict[str, list[Any]]:
    """Merge every *.tf file of one Terraform root into one python-hcl2 document."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as f:
            for key, blocks in hcl2.load(f).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def resources(root: dict[str, list[Any]], rtype: str) -> dict[str, dict[str, Any]]:
    """All resources of one type in a parsed root, by name."""
    found: dict[str, dict[str, Any]] = {}
    for block in root.get("resource", []):
        for name, body in block.get(rtype, {}).items():
            found[name] = body
    return found


def locals_of(root: dict[str, list[Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in root.get("locals", []):
        merged.update({k: unwrap(v) for k, v in block.items() if not k.startswith("__")})
    return merged


def module_file(expression: str) -> str | None:
    """The path inside `file("${path.module}/<path>")`, or None for any other expression."""
    match = re.fullmatch(r'\$\{file\("\$\{path\.module\}/([^"]+)"\)\}', expression)
    return match.group(1) if match else None


@pytest.fixture(scope="session")
def addons() -> dict[str, list[Any]]:
    return load_root(INFRA / "addons")


@pytest.fixture(scope="session")
def aws() -> dict[str, list[Any]]:
    return load_root(INFRA / "aws")
