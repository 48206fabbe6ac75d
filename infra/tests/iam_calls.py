"""What a Terraform run asks of AWS, and whether an IAM policy lets it.

The AWS provider logs every request it sends at TF_LOG=debug with the service, the API
operation and the resource type it works for; `calls()` reads them from a TF_LOG_PATH
file. `allows()` is the part of IAM evaluation the preview role's policy relies on: Allow
statements, wildcards in actions and resources, and the StringEquals, StringLike and
ArnEquals conditions. moto stores policies but never evaluates them, so this is how the
rehearsals check them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# The provider's service names in its log -> the IAM service prefix.
SERVICE_PREFIX = {
    "CloudWatch Logs": "logs",
    "EC2": "ec2",
    "IAM": "iam",
    "Lambda": "lambda",
    "S3": "s3",
    "STS": "sts",
    "Secrets Manager": "secretsmanager",
}
# Operations IAM never denies.
NO_PERMISSION = {"sts:GetCallerIdentity"}

_RECORD_START = re.compile(r"\n(?=\d{4}-\d\d-\d\dT[\d:.]+Z \[)")
_FIELD = re.compile(r'([\w.@]+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class Call:
    action: str  # IAM action, e.g. lambda:CreateFunction
    resource_type: str  # the Terraform resource or data source type it was made for


def calls(log_text: str) -> set[Call]:
    """Every AWS request of a TF_LOG=debug log, as IAM actions per resource type."""
    found = set()
    for record in _RECORD_START.split(log_text):
        if "HTTP Request Sent" not in record:
            continue
        fields = {k: v.strip('"') for k, v in _FIELD.findall(record)}
        if "rpc.method" not in fields or "rpc.service" not in fields:
            continue
        service = SERVICE_PREFIX[fields["rpc.service"]]
        kind = fields.get("tf_resource_type") or fields.get("tf_data_source_type") or "(provider)"
        found.add(Call(f"{service}:{fields['rpc.method']}", kind))
    return found


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            have = context.get(key)
            if have is None:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = have in wanted
            elif operator in ("StringLike", "ArnLike"):
                ok = any(_matches(w, have) for w in wanted)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated here")
            if not ok:
                return False
    return True


def allows(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether one Allow statement of `policy` grants `action` on `resource`."""
    context = context or {}
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if not any(_matches(a.lower(), action.lower()) for a in actions):
            continue
        if not any(_matches(r, resource) for r in resources):
            continue
        if _condition_holds(statement.get("Condition", {}), context):
            return True
    return False
