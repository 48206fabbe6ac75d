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

from conftest import INFRA, load_root
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
