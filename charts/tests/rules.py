"""Check and unit-test the alert rules exactly as the chart renders them.

The PrometheusRule is a Helm template (each release scopes its rules to its own namespace), so
promtool reads the rendered spec, not a file from the chart: each release's rule groups are
written to OUTDIR/<environment>.rules.yaml, next to copies of charts/tests/*.test.yaml whose
`rule_files` name them.

    python charts/tests/rules.py            # promtool check rules + promtool test rules
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import render

TESTS = Path(__file__).resolve().parent
# The releases the deploy workflow installs, each in its own namespace; the default values are
# rendered too so a chart installed without an environment file also gets valid rules.
ENVIRONMENTS = ("default", "staging", "production")


def rule_groups(environment: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of the PrometheusRule the chart renders for an environment."""
    rules = [o for o in render.render(environment, overrides) if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"expected one PrometheusRule for {environment}, found {len(rules)}"
    return dict(rules[0]["spec"])


def test_files() -> list[Path]:
    return sorted(TESTS.glob("*.test.yaml"))


def write_rule_files(outdir: Path) -> list[Path]:
    """OUTDIR/<environment>.rules.yaml for every environment, plus the promtool test files."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for environment in ENVIRONMENTS:
        path = outdir / f"{environment}.rules.yaml"
        path.write_text(yaml.safe_dump(rule_groups(environment), sort_keys=False))
        written.append(path)
    for test in test_files():
        shutil.copy(test, outdir / test.name)
    return written


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, check=False
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(tmp)
        failed = False
        for step in (
            ["check", "rules", *write_rule_files(outdir)],
            ["test", "rules", *(outdir / t.name for t in test_files())],
        ):
            result = promtool(*step)
            print(result.stdout + result.stderr, end="")
            failed = failed or result.returncode != 0
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
