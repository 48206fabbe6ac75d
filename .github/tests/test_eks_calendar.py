"""The scheduled EKS calendar check warns exactly when the calendar or the default ages.

Runs .github/scripts/eks-calendar.py as eks-calendar.yml does, with the date given.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "eks-calendar.py"
CALENDAR = json.loads((ROOT / "infra" / "aws" / "eks-versions.json").read_text())


def run(today: dt.date) -> list[str]:
    out = subprocess.run(
        [sys.executable, SCRIPT, "--today", today.isoformat()], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.startswith("::warning::")]


def test_no_warning_on_the_day_the_calendar_was_checked():
    assert run(dt.date.fromisoformat(CALENDAR["checked"])) == []


def test_warns_when_the_calendar_is_older_than_90_days():
    checked = dt.date.fromisoformat(CALENDAR["checked"])
    def stale(today):
        return [w for w in run(today) if "eks-versions.json was last checked" in w]

    assert stale(checked + dt.timedelta(days=90)) == []
    assert stale(checked + dt.timedelta(days=91))


def test_warns_when_the_default_nears_the_end_of_standard_support():
    default = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path(%r)['default_version']())" % str(SCRIPT)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    end = dt.date.fromisoformat(CALENDAR["versions"][default]["end_of_standard_support"])
    warnings = run(end - dt.timedelta(days=30))
    assert any(f"defaults to {default}" in w and str(end) in w for w in warnings), warnings


def test_the_workflow_runs_the_check_on_a_schedule():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "eks-calendar.yml").read_text())
    on = doc.get("on", doc.get(True))
    assert "schedule" in on
    steps = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert any(".github/scripts/eks-calendar.py" in s for s in steps)
