"""Prometheus's volume holds what it must keep: the sizing of infra/addons, evaluated by
terraform itself (`terraform console` on the variables and prometheus_sizing.tf, which need no
provider), follows the retention and the series count, and infra/README.md quotes its result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import INFRA

ADDONS = INFRA / "addons"
GIB = 2**30
# What infra/README.md ("Monitoring storage") counts per sample and per scrape.
BYTES_PER_SAMPLE = 2
SCRAPE_INTERVAL_S = 30

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not on PATH"
)


def sizing(tmp_path, **variables: int) -> dict[str, int]:
    """The sizing locals for the given variables (their defaults for the others)."""
    for name in ("variables.tf", "prometheus_sizing.tf"):
        shutil.copy(ADDONS / name, tmp_path / name)
    flags = [f"-var={k}={v}" for k, v in {"state_bucket": "example-tfstate", **variables}.items()]
    result = subprocess.run(
        ["terraform", "console", "-no-color", *flags],
        cwd=tmp_path,
        input="jsonencode({volume = local.prometheus_volume_gib, "
        "retention_size = local.prometheus_retention_size_gib})\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_IN_AUTOMATION": "1"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def needed_bytes(days: int, series: int) -> int:
    """The compressed blocks Prometheus writes in `days` for `series` active series."""
    return days * 86400 // SCRAPE_INTERVAL_S * series * BYTES_PER_SAMPLE


def test_default_volume_holds_the_retention_at_the_assumed_series(tmp_path):
    got = sizing(tmp_path)
    assert got["retention_size"] * GIB >= needed_bytes(31, 150_000), (
        "retentionSize would delete blocks before 31 days of 150 000 series"
    )
    assert got["volume"] * 0.85 >= got["retention_size"], "compaction needs room beyond retentionSize"


@pytest.mark.parametrize(
    "variables",
    [
        {"prometheus_retention_days": 62},
        {"prometheus_active_series": 600_000},
        {"prometheus_retention_days": 45, "prometheus_active_series": 40_000},
    ],
)
def test_volume_grows_with_the_retention_and_the_series(tmp_path, variables):
    """A longer retention or more series without a larger volume would have retentionSize cut
    the history short of the retention, silently."""
    got = sizing(tmp_path, **variables)
    days = variables.get("prometheus_retention_days", 31)
    series = variables.get("prometheus_active_series", 150_000)
    assert got["retention_size"] * GIB >= needed_bytes(days, series)
    assert got["volume"] * 0.85 >= got["retention_size"]
    # Not much more than needed either: a third for the WAL, the 85 % stop, rounding up.
    assert got["volume"] * GIB <= needed_bytes(days, series) * 4 / 3 / 0.85 + 2 * GIB


def test_readme_quotes_the_default_sizing(tmp_path):
    got = sizing(tmp_path)
    section = (INFRA / "README.md").read_text().split("## Monitoring storage", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert f"→ {got['retention_size']} GiB" in section, "README's retentionSize is stale"
    assert re.search(rf"= {got['volume']} GiB\b", section), "README's volume size is stale"
