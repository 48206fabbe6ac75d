#!/usr/bin/env python3
"""Warn when infra/aws/eks-versions.json, the EKS calendar the tests hold the default
Kubernetes version against, is too old to trust, or when that default is about to leave
standard support as of today.

  usage: eks-calendar.py [--today YYYY-MM-DD]

Prints GitHub `::warning::` lines and exits 0: the calendar ages with the clock, not with a
commit, so this warns on a schedule (eks-calendar.yml) instead of failing a build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALENDAR = ROOT / "infra" / "aws" / "eks-versions.json"
VARIABLES = ROOT / "infra" / "aws" / "variables.tf"
MAX_AGE = dt.timedelta(days=90)
MARGIN = dt.timedelta(days=60)


def default_version() -> str:
    block = re.search(r'variable "kubernetes_version" \{.*?default\s*=\s*"([^"]+)"', VARIABLES.read_text(), re.S)
    if not block:
        raise SystemExit(f"{VARIABLES.relative_to(ROOT)} declares no default kubernetes_version")
    return block.group(1)


def warnings(today: dt.date) -> list[str]:
    calendar = json.loads(CALENDAR.read_text())
    found = []
    checked = dt.date.fromisoformat(calendar["checked"])
    if today - checked > MAX_AGE:
        found.append(
            f"infra/aws/eks-versions.json was last checked on {checked}, {(today - checked).days} days ago: "
            f"compare it with {calendar['source']} and update `checked`"
        )
    version = default_version()
    dates = calendar["versions"].get(version)
    if dates is None:
        found.append(f"kubernetes_version defaults to {version}, which infra/aws/eks-versions.json does not list")
    else:
        end = dt.date.fromisoformat(dates["end_of_standard_support"])
        if end - today <= MARGIN:
            found.append(
                f"kubernetes_version defaults to {version}, whose EKS standard support ends {end} "
                f"({(end - today).days} days from {today}): move the default to a newer version"
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.datetime.now(dt.timezone.utc).date())
    args = parser.parse_args()
    found = warnings(args.today)
    for line in found:
        print(f"::warning::{line}")
    if not found:
        print(f"EKS calendar: current as of {args.today}")


if __name__ == "__main__":
    main()
