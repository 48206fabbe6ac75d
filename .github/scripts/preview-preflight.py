#!/usr/bin/env python3
"""Stop a preview deploy early when the account's Lambda concurrency quota cannot hold the
reservation its plan makes.

  usage: preview-preflight.py PLAN_JSON ACCOUNT_SETTINGS_JSON
    PLAN_JSON              `terraform show -json tfplan` of infra/preview
    ACCOUNT_SETTINGS_JSON  `aws lambda get-account-settings`

AWS refuses a reservation that leaves fewer unreserved executions than its minimum (100, or
the whole quota when the quota is 100 or less, as on many new accounts whose quota is 10):
the apply would fail halfway with InvalidParameterValueException. This says so first, in
one `::error::` line naming the quota, what the preview needs and how to raise it.
Exit 0 when the reservation fits or the plan reserves nothing; 1 otherwise.
"""

from __future__ import annotations

import json
import sys

QUOTA = "Lambda 'Concurrent executions' (Service Quotas code L-B99A9384)"
# AWS keeps this many executions unreserved for functions without a reservation.
MIN_UNRESERVED = 100


def reservation_change(plan: dict) -> int:
    """Executions the plan newly reserves for the preview's functions (their old
    reservations are given back by the same changes)."""
    extra = 0
    for change in plan.get("resource_changes", []):
        if change["type"] != "aws_lambda_function":
            continue
        before = (change["change"].get("before") or {}).get("reserved_concurrent_executions")
        after = (change["change"].get("after") or {}).get("reserved_concurrent_executions")
        # -1 (or nothing) is the provider's "no reservation".
        held = before if isinstance(before, int) and before > 0 else 0
        wanted = after if isinstance(after, int) and after > 0 else 0
        extra += wanted - held
    return extra


def check(plan: dict, settings: dict) -> str | None:
    """The error line, or None when the plan's reservation fits the account."""
    extra = reservation_change(plan)
    if extra <= 0:
        return None
    limit = settings["AccountLimit"]["ConcurrentExecutions"]
    unreserved = settings["AccountLimit"]["UnreservedConcurrentExecutions"]
    floor = min(MIN_UNRESERVED, limit)
    if unreserved - extra >= floor:
        return None
    return (
        f"the preview reserves {extra} more concurrent execution(s), but the account's {QUOTA} "
        f"is {limit} with {unreserved} unreserved, and AWS keeps at least {floor} unreserved: "
        f"request a quota of at least {(limit - unreserved) + extra + MIN_UNRESERVED} in Service Quotas "
        f"(AWS Lambda, Concurrent executions), or deploy the postgres store without "
        f"reserved_concurrency, which reserves nothing"
    )


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    with open(sys.argv[2]) as f:
        settings = json.load(f)
    error = check(plan, settings)
    if error:
        print(f"::error::{error}")
        return 1
    print("preflight: the account's Lambda concurrency holds this preview")
    return 0


if __name__ == "__main__":
    sys.exit(main())
