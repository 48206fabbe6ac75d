"""infra/aws applied for real against moto: everything moto serves, then a plan with no
changes, then destroy leaving nothing.

moto has no EKS control plane that behaves like AWS (access entries, add-ons, the cluster's
OIDC issuer), so the cluster and everything that needs it are targeted out; the list is
computed from the configuration (a resource is left out when it refers, directly or through
locals, to one that moto cannot serve) and infra/README.md says what only AWS checks.
"""

from __future__ import annotations

import json
import re

import pytest

import zipfile

from conftest import INFRA, load_root
from iam_calls import NO_PERMISSION, allows, calls
from moto_rehearsal import MIRROR, Moto, Root

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"no provider mirror at {MIRROR}: hashicorp/aws cannot be installed"
)

AWS = INFRA / "aws"

# What moto cannot serve as AWS does. moto's EKS creates a cluster, but returns neither its
# access_config, upgrade_policy nor security group, so every plan would replace it; it has no
# node groups' behaviour, add-ons or access entries.
NOT_IN_MOTO = {
    "aws_eks_cluster.this",
    "aws_eks_node_group.default",
    "aws_eks_addon.this",
    "aws_eks_access_entry.this",
    "aws_eks_access_policy_association.this",
}

# Attributes moto accepts but does not return, so a plan after apply would show them as
# changes although AWS would not. Any other change fails the rehearsal.
MOTO_DOES_NOT_RETURN = {
    "aws_db_instance": {
        "performance_insights_enabled",
        "performance_insights_kms_key_id",
        "performance_insights_retention_period",
    },
    "aws_db_parameter_group": {"parameter"},
    # Launch template tag specifications (and so the version a change would create).
    "aws_launch_template": {"tag_specifications", "default_version", "latest_version"},
    # The description of a rule that references a security group.
    "aws_vpc_security_group_ingress_rule": {"description"},
}

REFERENCE = re.compile(r"\b(aws_[a-z0-9_]+)\.([a-z0-9_]+)\b")
LOCAL = re.compile(r"\blocal\.([a-z0-9_]+)\b")


def rehearsed_resources() -> list[str]:
    """Every resource of infra/aws that does not depend on one moto cannot serve."""
    root = load_root(AWS)
    bodies = {
        f"{rtype}.{name}": json.dumps(body)
        for block in root["resource"]
        for rtype, named in block.items()
        for name, body in named.items()
    }
    local_bodies = {
        name: json.dumps(value)
        for block in root.get("locals", [])
        for name, value in block.items()
        if not name.startswith("__")
    }

    def references(text: str, seen_locals: set[str]) -> set[str]:
        found = {f"{t}.{n}" for t, n in REFERENCE.findall(text)} & set(bodies)
        for name in set(LOCAL.findall(text)) - seen_locals:
            seen_locals.add(name)
            found |= references(local_bodies.get(name, ""), seen_locals)
        return found

    direct = {address: references(body, set()) for address, body in bodies.items()}
    excluded = set(NOT_IN_MOTO)
    changed = True
    while changed:
        changed = False
        for address, refs in direct.items():
            if address not in excluded and refs & excluded:
                excluded.add(address)
                changed = True
    return sorted(set(bodies) - excluded)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    moto = Moto()
    zone = (
        moto.client("route53")
        .create_hosted_zone(Name="example.com", CallerReference="rehearsal")["HostedZone"]["Id"]
        .split("/")[-1]
    )
    root = Root(AWS, tmp_path_factory.mktemp("aws"), moto)
    root.init()
    targets = [flag for address in rehearsed_resources() for flag in ("-target", address)]
    variables = (
        "-var", "domain_name=example.com",
        "-var", f"hosted_zone_id={zone}",
        "-var", "cluster_admin_role_arn=arn:aws:iam::123456789012:role/platform-admin",
        "-var", "github_repository=example-org/order-service",
        "-var", "state_bucket_name=example-org-tfstate",
        "-var", "create_database=true",
        # Lets destroy remove the database; AWS refuses while deletion protection is on.
        "-var", "database_deletion_protection=false",
    )  # fmt: skip
    root.apply(*variables, *targets)
    yield root, moto, variables, targets
    try:
        if root.state():
            root.destroy(*variables, *targets)
    finally:
        moto.stop()


def test_rehearsal_covers_the_platform_outside_the_cluster():
    rehearsed = rehearsed_resources()
    for address in (
        "aws_vpc.this",
        "aws_nat_gateway.this",
        "aws_flow_log.vpc",
        "aws_kms_key.app",
        "aws_secretsmanager_secret.app",
        "aws_acm_certificate_validation.this",
        "aws_ecr_repository.app",
        "aws_db_instance.this",
        "aws_iam_role.github",
        "aws_iam_role_policy.github_plan",
        "aws_iam_policy.preview_boundary",
        "aws_secretsmanager_secret.grafana_admin",
    ):
        assert address in rehearsed, f"{address} is left out of the moto rehearsal"
    assert "aws_iam_role.app" not in rehearsed, "the app roles trust the cluster's OIDC issuer"


def test_plan_after_apply_shows_no_changes(platform):
    root, _, variables, targets = platform
    changes = root.planned_changes(*variables, *targets)
    unexpected = {
        address: attributes - MOTO_DOES_NOT_RETURN.get(address.split("[")[0].split(".")[0], set())
        for address, attributes in changes.items()
    }
    unexpected = {a: sorted(attrs) for a, attrs in unexpected.items() if attrs}
    if unexpected:
        pytest.fail(
            "a plan right after apply must show no changes:\n" + json.dumps(unexpected, indent=1)
        )


def github_subjects(moto, role: str) -> list[str]:
    trust = moto.client("iam").get_role(RoleName=f"order-service-github-{role}")["Role"][
        "AssumeRolePolicyDocument"
    ]
    if isinstance(trust, str):
        trust = json.loads(trust)
    (statement,) = trust["Statement"]
    subjects = statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    return [subjects] if isinstance(subjects, str) else subjects


def test_administrator_role_trusts_only_the_infrastructure_environment(platform):
    _, moto, _, _ = platform
    assert github_subjects(moto, "apply") == [
        "repo:example-org/order-service:environment:infrastructure"
    ]
    assert github_subjects(moto, "deploy-production") == [
        "repo:example-org/order-service:environment:production"
    ]


def test_plan_role_holds_no_managed_policy_and_reads_no_secret(platform):
    _, moto, _, _ = platform
    iam = moto.client("iam")
    attached = iam.list_attached_role_policies(RoleName="order-service-github-plan")
    assert attached["AttachedPolicies"] == [], "ReadOnlyAccess would read every object and log"
    document = iam.get_role_policy(
        RoleName="order-service-github-plan", PolicyName="terraform-plan"
    )["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    actions = {
        a
        for s in document["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "secretsmanager:GetSecretValue" not in actions
    assert not [a for a in actions if a.endswith("*")]


def test_preview_boundary_names_the_real_subnets_and_security_group(platform):
    _, moto, _, _ = platform
    iam, ec2 = moto.client("iam"), moto.client("ec2")
    arn = "arn:aws:iam::123456789012:policy/order-service-preview-boundary"
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    if isinstance(document, str):
        document = json.loads(document)
    (create,) = [s for s in document["Statement"] if s["Sid"] == "PreviewNetworkInterfaces"]
    private = ec2.describe_subnets(
        Filters=[{"Name": "tag:kubernetes.io/role/internal-elb", "Values": ["1"]}]
    )["Subnets"]
    (group,) = ec2.describe_security_groups(GroupNames=["order-service-preview"])["SecurityGroups"]
    expected = {s["SubnetArn"] for s in private} | {
        f"arn:aws:ec2:eu-west-1:123456789012:security-group/{group['GroupId']}",
        "arn:aws:ec2:eu-west-1:123456789012:network-interface/*",
    }
    assert set(create["Resource"]) == expected
    assert len(private) == 3


def test_registry_keeps_tags_immutable_and_scans(platform):
    _, moto, _, _ = platform
    (repo,) = moto.client("ecr").describe_repositories(repositoryNames=["order-service"])[
        "repositories"
    ]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    policy = json.loads(
        moto.client("ecr").get_lifecycle_policy(repositoryName="order-service")[
            "lifecyclePolicyText"
        ]
    )
    assert [r["selection"]["tagStatus"] for r in policy["rules"]] == ["untagged", "any"]


def test_grafana_secret_is_created_empty(platform):
    """infra/aws never holds the password: infra/addons writes it write-only."""
    _, moto, _, _ = platform
    secret = moto.client("secretsmanager").describe_secret(
        SecretId="order-service/platform/grafana-admin"
    )
    assert not secret.get("VersionIdsToStages")


# --- the preview role can run infra/preview -------------------------------------------------

PREVIEW_PR = 4242
PREVIEW_FUNCTION = f"order-service-preview-pr-{PREVIEW_PR}"
ACCOUNT = "123456789012"
STATE_BUCKET = "example-org-tfstate"  # state_bucket_name of the platform fixture
# Data sources that are computed without a request.
NO_REQUEST = {"aws_partition"}


@pytest.fixture(scope="module")
def preview_run(platform, tmp_path_factory):
    """A postgres preview in the platform's own preview network, with the platform's boundary
    and a preview secret: applied, applied again with new code (every push), planned and
    destroyed, logging every AWS request the provider makes."""
    _, moto, _, _ = platform
    work = tmp_path_factory.mktemp("preview-calls")
    network = {
        "subnet_ids": [s["SubnetId"] for s in moto.client("ec2").describe_subnets(
            Filters=[{"Name": "tag:kubernetes.io/role/internal-elb", "Values": ["1"]}])["Subnets"]],
        "security_group_ids": [moto.client("ec2").describe_security_groups(
            GroupNames=["order-service-preview"])["SecurityGroups"][0]["GroupId"]],
    }  # fmt: skip
    secret = moto.client("secretsmanager").create_secret(
        Name="order-service/preview/app", SecretString='{"database_url": "postgres://preview@db/app"}'
    )
    root = Root(INFRA / "preview", work, moto)
    root.init()
    log = work / "terraform.log"
    root.env.update({"TF_LOG": "debug", "TF_LOG_PATH": str(log)})
    variables = [
        "-var", f"pr_number={PREVIEW_PR}", "-var", "store=postgres",
        "-var", f"secret_name={secret['Name']}",
        "-var", f"subnet_ids={json.dumps(network['subnet_ids'])}",
        "-var", f"security_group_ids={json.dumps(network['security_group_ids'])}",
    ]  # fmt: skip
    try:
        for content in ("first", "second"):
            bundle = work / f"{content}.zip"
            with zipfile.ZipFile(bundle, "w") as z:
                z.writestr("bootstrap", f"#!/bin/sh\n# {content}\n")
            root.apply(*variables, "-var", f"lambda_zip={bundle}")
        root.plan_changes(*variables, "-var", f"lambda_zip={bundle}")
    finally:
        root.destroy(*variables, "-var", f"lambda_zip={bundle}")
        moto.client("secretsmanager").delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
    return calls(log.read_text()), secret["ARN"], bool(network["subnet_ids"])


def preview_role_policy(moto) -> dict:
    document = moto.client("iam").get_role_policy(
        RoleName="order-service-github-preview", PolicyName="manage-previews"
    )["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def required(observed, secret_arn: str, in_vpc: bool) -> list[tuple[str, str, dict]]:
    """(action, resource ARN, condition context) of every request of the preview run, of
    what AWS authorises besides the request itself, and of the S3 backend (tf-init.sh)."""
    arn = {
        "lambda": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:{PREVIEW_FUNCTION}",
        "iam": f"arn:aws:iam::{ACCOUNT}:role/{PREVIEW_FUNCTION}",
        "logs": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/{PREVIEW_FUNCTION}",
        "secretsmanager": secret_arn,
    }
    # Calls IAM checks against every resource ("*"), whatever the request names.
    unscoped = {"logs:DescribeLogGroups"}
    boundary = {"iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/order-service-preview-boundary"}
    needed = []
    for call in observed:
        if call.action in NO_PERMISSION:
            continue
        service = call.action.split(":")[0]
        resource = "*" if call.action in unscoped or service == "ec2" else arn[service]
        needed.append((call.action, resource, boundary if service == "iam" else {}))
    actions = {c.action for c in observed}
    if "lambda:CreateFunction" in actions:
        # CreateFunction passes the execution role and tags the function (default_tags).
        needed.append(("iam:PassRole", arn["iam"], {"iam:PassedToService": "lambda.amazonaws.com"}))
        needed.append(("lambda:TagResource", arn["lambda"], {}))
        if in_vpc:
            # Lambda checks that the caller may see the subnets and security groups it names.
            needed += [(a, "*", {}) for a in ("ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs")]
    if "iam:CreateRole" in actions:
        needed.append(("iam:TagRole", arn["iam"], boundary))
    if "logs:CreateLogGroup" in actions:
        needed.append(("logs:TagResource", arn["logs"], {}))
    # The deploy's preflight, and the database URL the teardown's schema drop reads
    # (preview-deploy.sh, preview-schema.sh).
    needed.append(("lambda:GetAccountSettings", "*", {}))
    # The deploy invokes a postgres preview's migrate function before the update.
    needed.append(("lambda:InvokeFunction", f"{arn['lambda']}-migrate", {}))
    needed.append(("secretsmanager:GetSecretValue", secret_arn, {}))
    # The S3 backend with use_lockfile (tf-init.sh): state and lock object of this preview.
    state = f"arn:aws:s3:::{STATE_BUCKET}/preview/pr-{PREVIEW_PR}.tfstate"
    needed += [
        ("s3:ListBucket", f"arn:aws:s3:::{STATE_BUCKET}", {"s3:prefix": f"preview/pr-{PREVIEW_PR}.tfstate"}),
        ("s3:GetObject", state, {}),
        ("s3:PutObject", state, {}),
        ("s3:PutObject", f"{state}.tflock", {}),
        ("s3:DeleteObject", f"{state}.tflock", {}),
    ]
    return sorted(set((a, r, json.dumps(c, sort_keys=True)) for a, r, c in needed))


def test_the_preview_rehearsal_reaches_every_resource_and_data_source_of_infra_preview(preview_run):
    observed, _, _ = preview_run
    declared = set()
    for kind in ("resource", "data"):
        for block in load_root(INFRA / "preview").get(kind, []):
            declared.update(block)
    reached = {c.resource_type for c in observed}
    assert declared - NO_REQUEST <= reached, f"never called AWS for: {sorted(declared - NO_REQUEST - reached)}"
    assert {"lambda:UpdateFunctionCode", "secretsmanager:GetResourcePolicy"} <= {c.action for c in observed}


def test_the_preview_role_allows_every_call_infra_preview_makes(platform, preview_run):
    """The preview role's policy, as infra/aws wrote it into IAM, against every request of a
    preview's apply, update, plan and destroy."""
    _, moto, _, _ = platform
    observed, secret_arn, in_vpc = preview_run
    policy = preview_role_policy(moto)
    denied = [
        f"{action} on {resource}" + (f" with {context}" if context != "{}" else "")
        for action, resource, context in required(observed, secret_arn, in_vpc)
        if not allows(policy, action, resource, json.loads(context))
    ]
    assert not denied, "the preview role (infra/aws/github_oidc.tf) denies:\n" + "\n".join(denied)


def test_the_permission_check_denies_what_the_policy_leaves_out(platform, preview_run):
    """The check itself can fail: without its statement for secrets, the data source's
    calls are denied."""
    _, moto, _, _ = platform
    observed, secret_arn, in_vpc = preview_run
    policy = preview_role_policy(moto)
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "PreviewSecrets"]
    needed = required(observed, secret_arn, in_vpc)
    assert not allows(policy, "secretsmanager:DescribeSecret", secret_arn)
    assert any(not allows(policy, a, r, json.loads(c)) for a, r, c in needed)


def test_destroy_leaves_nothing(platform):
    root, moto, variables, targets = platform
    root.destroy(*variables, *targets)
    assert root.state() == []
    ec2 = moto.client("ec2")
    assert (
        ec2.describe_nat_gateways(Filters=[{"Name": "state", "Values": ["available", "pending"]}])[
            "NatGateways"
        ]
        == []
    )
    assert not [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")], (
        "the VPC must be gone"
    )
    roles = [r["RoleName"] for r in moto.client("iam").list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith("order-service-")]
    assert moto.client("ecr").describe_repositories()["repositories"] == []
