"""Every Terraform root pins its providers in a committed .terraform.lock.hcl.

Without it, `terraform init` in CI picks whatever version the constraint allows that day,
and two runs of the same commit can plan with different providers. For infra/aws and
infra/preview `terraform init -lockfile=readonly` (.ci/stages/infra.sh) also proves the
file matches the mirror; infra/addons' helm and kubernetes providers cannot be installed
here, so this test checks its lock file against the constraints of versions.tf.
"""

from __future__ import annotations

import re

import hcl2
import pytest

from conftest import INFRA, unwrap

ROOTS = sorted(p.parent for p in INFRA.glob("*/versions.tf"))


def required_providers(root) -> dict[str, str]:
    with (root / "versions.tf").open() as f:
        terraform = unwrap(hcl2.load(f)["terraform"])
    providers = unwrap(terraform["required_providers"])
    return {
        name: (unwrap(spec)["source"], unwrap(spec)["version"]) for name, spec in providers.items()
    }


def locked(root) -> dict[str, tuple[str, list[str]]]:
    path = root / ".terraform.lock.hcl"
    assert path.is_file(), f"{path.relative_to(INFRA.parent)} is missing"
    with path.open() as f:
        document = hcl2.load(f)
    entries = {}
    for block in document.get("provider", []):
        for address, body in block.items():
            entries[address] = (unwrap(body["version"]), unwrap(body["hashes"]))
    return entries


def satisfies(version: str, constraint: str) -> bool:
    """Terraform's version constraint operators, enough for the ones used here."""
    parts = lambda v: [int(x) for x in v.split(".")] + [0] * (3 - len(v.split(".")))  # noqa: E731
    have = parts(version)
    for clause in constraint.split(","):
        op, want_text = re.fullmatch(r"\s*(>=|<=|>|<|=|!=|~>)?\s*([\d.]+)\s*", clause).groups()
        want = parts(want_text)
        if op == "~>":
            fixed = len(want_text.split(".")) - 1
            if have < want or have[:fixed] != want[:fixed]:
                return False
        elif not {
            None: have == want,
            "=": have == want,
            "!=": have != want,
            ">=": have >= want,
            ">": have > want,
            "<=": have <= want,
            "<": have < want,
        }[op]:
            return False
    return True


def test_every_root_is_found():
    assert {r.name for r in ROOTS} == {"aws", "addons", "preview"}


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: r.name)
def test_lock_file_pins_every_required_provider(root):
    entries = locked(root)
    for name, (source, constraint) in required_providers(root).items():
        address = f"registry.terraform.io/{source}"
        assert address in entries, f"{root.name}: {address} is not in .terraform.lock.hcl"
        version, hashes = entries[address]
        assert satisfies(version, constraint), (
            f"{root.name}: {source} {version} breaks {constraint}"
        )
        assert any(h.startswith("h1:") for h in hashes), f"{root.name}: {source} has no h1 hash"


def test_version_constraints_are_read_correctly():
    assert satisfies("3.0.2", "~> 3.0") and not satisfies("4.0.0", "~> 3.0")
    assert satisfies("2.38.0", "~> 2.38") and not satisfies("2.37.1", "~> 2.38")
    assert satisfies("5.100.0", ">= 5.100, < 6.0") and not satisfies("6.0.0", ">= 5.100, < 6.0")
