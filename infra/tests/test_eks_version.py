"""The default EKS version is one AWS still creates clusters on, at standard-support prices.

infra/aws/eks-versions.json holds the EKS calendar with the date it was last checked; the
test measures the default against that date, never against today's, so CI stays
deterministic. The scheduled workflow eks-calendar.yml warns when the calendar itself gets
old (.github/scripts/eks-calendar.py).
"""

from __future__ import annotations

import datetime as dt
import json

import hcl2

from conftest import INFRA, unwrap

CALENDAR = INFRA / "aws" / "eks-versions.json"
# How long before the end of standard support the default must already have moved on:
# time to test an upgrade of the cluster and the add-on charts.
MARGIN = dt.timedelta(days=60)


def calendar() -> dict:
    return json.loads(CALENDAR.read_text())


def default_version() -> str:
    with (INFRA / "aws" / "variables.tf").open() as f:
        for block in hcl2.load(f)["variable"]:
            if "kubernetes_version" in block:
                return unwrap(block["kubernetes_version"]["default"])
    raise AssertionError("infra/aws declares no kubernetes_version")


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_every_calendar_entry_is_complete_and_in_order():
    versions = calendar()["versions"]
    assert versions
    for version, dates in versions.items():
        released = day(dates["released"])
        standard = day(dates["end_of_standard_support"])
        extended = day(dates["end_of_extended_support"])
        # EKS: 14 months of standard support, then 12 of extended support.
        assert released < standard < extended, version
        assert 13 * 30 <= (standard - released).days <= 15 * 31, f"{version}: standard support is not about 14 months"
        assert 11 * 30 <= (extended - standard).days <= 13 * 31, f"{version}: extended support is not about 12 months"


def test_the_default_version_is_in_standard_support_with_a_margin_as_of_the_last_check():
    cal = calendar()
    version = default_version()
    assert version in cal["versions"], f"kubernetes_version defaults to {version}, which is not in {CALENDAR.name}"
    checked = day(cal["checked"])
    dates = cal["versions"][version]
    assert day(dates["released"]) <= checked, f"{version} was not released yet on {checked}"
    end = day(dates["end_of_standard_support"])
    assert checked + MARGIN < end, (
        f"kubernetes_version defaults to {version}, whose standard support ends {end}, "
        f"within {MARGIN.days} days of {checked}: move the default to a newer version"
    )


def test_the_default_is_the_newest_released_version():
    cal = calendar()
    checked = day(cal["checked"])
    released = [v for v, d in cal["versions"].items() if day(d["released"]) <= checked]
    newest = max(released, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert default_version() == newest, f"a new cluster should start on {newest}, the newest EKS version"
