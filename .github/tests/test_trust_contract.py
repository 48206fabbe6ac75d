"""What the workflows may do in AWS and when, checked against infra/aws and PIPELINES.md:

- every job that assumes a role presents an OIDC subject the role trusts, and each role
  trusts exactly the subjects of the jobs that assume it: no job in `production` can
  take the administrator role, no pull request can take the plan role;
- each GitHub environment a workflow uses is documented in .github/PIPELINES.md with its
  protection (reviewers, deployment branches) and the role it unlocks;
- the preview permission boundary lets network interfaces be created only in the preview
  subnets and security group;
- delivery is gated on a green CI run and its concurrency groups cannot stall staging or
  drop an apply.

infra/aws/github_oidc.tf is read with python-hcl2, as Terraform would parse it.
"""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PIPELINES = ROOT / ".github" / "PIPELINES.md"
OIDC_TF = ROOT / "infra" / "aws" / "github_oidc.tf"

# Repository variable -> key of the infra/aws output github_role_arns.
ROLE_VARIABLES = {
    "AWS_PLAN_ROLE_ARN": "plan",
    "AWS_APPLY_ROLE_ARN": "apply",
    "AWS_DEPLOY_STAGING_ROLE_ARN": "deploy_staging",
    "AWS_DEPLOY_PRODUCTION_ROLE_ARN": "deploy_production",
    "AWS_PREVIEW_ROLE_ARN": "preview",
    "AWS_PUBLISH_ROLE_ARN": "publish",
}
# Roles whose environment must make a person approve each job.
NEEDS_REVIEWERS = {"apply", "deploy_production"}


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if True in doc:  # PyYAML reads `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def workflows() -> dict[str, dict]:
    return {p.name: load(p) for p in sorted(WORKFLOWS.glob("*.yml"))}


# --- infra/aws -----------------------------------------------------------------------------


def oidc_tf() -> dict:
    with OIDC_TF.open() as f:
        return hcl2.load(f)


def trusted_subjects() -> dict[str, set[str]]:
    """Role key -> the `sub` claims it trusts, without the repo:<owner>/<name>: prefix."""
    roles = None
    for block in oidc_tf().get("locals", []):
        if "github_roles" in block:
            roles = block["github_roles"]
            # python-hcl2 wraps an object value in a one-element list.
            roles = roles[0] if isinstance(roles, list) else roles
    assert roles, f"{OIDC_TF.relative_to(ROOT)} has no locals.github_roles map (role -> trusted subjects)"
    trust = {}
    for role, subjects in roles.items():
        trust[role] = set()
        for subject in subjects:
            m = re.fullmatch(r"\$\{local\.github_repo_sub\}:(.+)", subject)
            assert m, f"github_roles.{role}: {subject!r} does not start with the repository's subject"
            trust[role].add(m.group(1))
    return trust


# --- the workflows -------------------------------------------------------------------------


def job_environment(job: dict) -> str | None:
    env = job.get("environment")
    env = env.get("name") if isinstance(env, dict) else env
    if "uses" in job:  # deploy-environment.yml binds its job to inputs.environment
        env = (job.get("with") or {}).get("environment")
    return env


def presented_subjects(doc: dict, job: dict) -> set[str]:
    """The `sub` claims (after repo:<owner>/<name>:) this job's OIDC token can carry."""
    env = job_environment(job)
    if env:
        return {f"environment:{env}"}
    subjects = set()
    for trigger in doc["on"]:
        if trigger in {"push", "workflow_dispatch", "schedule", "workflow_run"}:
            # workflow_run and schedule run on the default branch; the others are
            # limited to main by the jobs' own gates.
            subjects.add("ref:refs/heads/main")
        elif trigger == "pull_request":
            subjects.add("pull_request")
    return subjects


def assumptions() -> list[dict]:
    """Every (workflow, job) that assumes an AWS role, with the role and its subjects."""
    found = []
    for name, doc in workflows().items():
        for job_id, job in doc.get("jobs", {}).items():
            exprs = []
            if "uses" in job:
                exprs.append(str((job.get("with") or {}).get("role-to-assume", "")))
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
                    exprs.append(str(step["with"]["role-to-assume"]))
            for expr in filter(None, exprs):
                if expr.startswith("${{ inputs."):
                    continue  # inside deploy-environment.yml: its callers name the role
                m = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", expr)
                assert m, f"{name}:{job_id}: the role must come from a repository variable, got {expr}"
                assert m.group(1) in ROLE_VARIABLES, f"{name}:{job_id}: {m.group(1)} names no known role"
                found.append(
                    {
                        "where": f"{name}:{job_id}",
                        "role": ROLE_VARIABLES[m.group(1)],
                        "environment": job_environment(job),
                        "subjects": presented_subjects(doc, job),
                    }
                )
    return found


def test_every_assumed_role_trusts_the_job_that_assumes_it():
    trust = trusted_subjects()
    found = assumptions()
    assert {a["role"] for a in found} == set(ROLE_VARIABLES.values()), "expected a job for every role variable"
    problems = [
        f"{a['where']} presents {sorted(a['subjects'] - trust.get(a['role'], set()))} "
        f"but role {a['role']} trusts {sorted(trust.get(a['role'], set()))}"
        for a in found
        if not a["subjects"] <= trust.get(a["role"], set())
    ]
    assert not problems, "\n".join(problems)


def test_each_role_trusts_only_the_subjects_of_the_jobs_that_assume_it():
    # A trusted subject that no job of that role presents is a door nobody uses: the plan
    # role trusting every pull request, the administrator role trusting `production`.
    trust = trusted_subjects()
    used: dict[str, set[str]] = {}
    for a in assumptions():
        used.setdefault(a["role"], set()).update(a["subjects"])
    problems = [
        f"role {role} also trusts {sorted(trust[role] - subjects)}, which no job assuming it presents"
        for role, subjects in used.items()
        if trust.get(role, set()) - subjects
    ]
    assert not problems, "\n".join(problems)


def test_an_environment_unlocks_exactly_one_role():
    # Any job bound to an environment can request that environment's token: if two
    # roles trusted it, a production deploy job could take the administrator role.
    trust = trusted_subjects()
    owners: dict[str, set[str]] = {}
    for role, subjects in trust.items():
        for subject in subjects:
            if subject.startswith("environment:"):
                owners.setdefault(subject, set()).add(role)
    shared = {s: sorted(r) for s, r in owners.items() if len(r) > 1}
    assert not shared, f"environment subjects trusted by more than one role: {shared}"
    for a in assumptions():
        if a["environment"]:
            assert owners.get(f"environment:{a['environment']}") == {a["role"]}, a


def test_the_administrator_role_is_reachable_only_through_the_infrastructure_environment():
    assert trusted_subjects()["apply"] == {"environment:infrastructure"}
    apply_jobs = [a for a in assumptions() if a["role"] == "apply"]
    assert [a["where"] for a in apply_jobs] == ["deliver.yml:apply"]
    assert apply_jobs[0]["environment"] == "infrastructure"


def test_the_publish_role_is_taken_only_by_the_image_job_and_trusts_exactly_its_subject():
    # The job that pushes to ECR runs on main without an environment: its token says
    # ref:refs/heads/main, and that is all the publish role may trust.
    publish_jobs = [a for a in assumptions() if a["role"] == "publish"]
    assert [a["where"] for a in publish_jobs] == ["deliver.yml:image"], publish_jobs
    assert publish_jobs[0]["environment"] is None
    assert trusted_subjects()["publish"] == publish_jobs[0]["subjects"] == {"ref:refs/heads/main"}


def policy_statements(resource: str) -> list[str]:
    """Each statement of an aws_iam_role_policy/aws_iam_policy in github_oidc.tf, as HCL text."""
    text = OIDC_TF.read_text()
    m = re.search(rf'resource "aws_iam_(?:role_)?policy" "{resource}" \{{(.*?)\n\}}\n', text, re.S)
    assert m, f"infra/aws has no {resource} policy"
    statements = re.findall(r"\{\s*\n\s*(?:#[^\n]*\n\s*)*Sid\s*=.*?\n\s{6}\}", m.group(1), re.S)
    assert statements, f"cannot read the statements of {resource}"
    return statements


def test_the_publish_role_may_push_to_the_app_repository_and_nothing_else():
    allowed = {}
    for statement in policy_statements("github_publish"):
        actions = set(re.findall(r'"([a-z0-9]+:[A-Za-z*]+)"', statement))
        resource = re.search(r"Resource\s*=\s*(.*?)\n", statement).group(1).strip()
        for action in actions:
            allowed[action] = resource
    # What docker buildx push and the re-run check (describe-images) need.
    for action in (
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:BatchCheckLayerAvailability",
        "ecr:PutImage",
        "ecr:DescribeImages",
    ):
        assert allowed.get(action) == "aws_ecr_repository.app.arn", f"publish: {action} on {allowed.get(action)}"
    # The login token cannot be scoped; everything else names the app repository only.
    assert allowed.get("ecr:GetAuthorizationToken") == '"*"'
    wide = {a: r for a, r in allowed.items() if a != "ecr:GetAuthorizationToken" and r != "aws_ecr_repository.app.arn"}
    assert not wide, f"publish may act beyond the app repository: {wide}"
    # Never delete or retag: the repository's tags are immutable history.
    forbidden = {"ecr:BatchDeleteImage", "ecr:DeleteRepository", "ecr:PutImageTagMutability", "ecr:*"}
    assert not (forbidden & set(allowed)), sorted(forbidden & set(allowed))


# --- the preview permission boundary -------------------------------------------------------


def test_the_preview_boundary_limits_network_interfaces_to_the_preview_network():
    text = OIDC_TF.read_text()
    m = re.search(r'resource "aws_iam_policy" "preview_boundary" \{(.*?)\n\}\n', text, re.S)
    assert m, "infra/aws has no preview_boundary policy"
    # Each statement of the boundary, as written in HCL.
    statements = re.findall(r"\{\s*\n\s*(?:#[^\n]*\n\s*)*Sid\s*=.*?\n\s{6}\}", m.group(1), re.S)
    assert statements, "cannot read the boundary's statements"
    eni = [s for s in statements if "ec2:CreateNetworkInterface" in s]
    assert eni, "the boundary grants no ec2:CreateNetworkInterface (a preview in the VPC could not start)"
    for statement in [s for s in statements if re.search(r'"ec2:(Create|Delete)NetworkInterface"', s)]:
        resource = re.search(r"Resource\s*=\s*(.*?)(?:\n\s*Condition|\n\s{6}\})", statement, re.S).group(1)
        # Never every EC2 resource of the account: a pull request could attach a function
        # to the cluster's security group.
        assert not re.search(r'ec2:\$\{var\.region\}:\$\{local\.account_id\}:\*"', resource), statement
        assert resource.strip() not in ('"*"', '["*"]'), statement
    create = eni[0]
    assert "preview_subnet" in create and "aws_security_group.preview" in create, (
        "CreateNetworkInterface must name the preview subnets and the preview security group:\n" + create
    )


# --- environments are documented with their protection ------------------------------------


def documented_environments() -> dict[str, dict[str, str]]:
    text = PIPELINES.read_text()
    assert "## Environments" in text, "PIPELINES.md has no '## Environments' section"
    section = text.split("## Environments", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip().lower() for c in rows[0].strip("|").split("|")]
    envs = {}
    for row in rows[2:]:
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=False))
        envs[cells["environment"].strip("`")] = cells
    return envs


def used_environments() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for name, doc in workflows().items():
        for job_id, job in doc.get("jobs", {}).items():
            env = job_environment(job)
            if env and "${{" not in env:
                used.setdefault(env, set()).add(f"{name}:{job_id}")
    return used


def test_every_environment_a_workflow_uses_is_documented_with_its_protection():
    documented = documented_environments()
    used = used_environments()
    assert used, "expected jobs bound to GitHub environments"
    missing = sorted(set(used) - set(documented))
    assert not missing, f"environments used but not in PIPELINES.md's table: {missing}"
    roles = {a["environment"]: a["role"] for a in assumptions() if a["environment"]}
    for env in used:
        row = documented[env]
        for column in ("reviewers", "deployment branches", "role"):
            assert row.get(column), f"PIPELINES.md: {env} has no {column!r}"
        assert f"`{roles[env]}`" in row["role"], f"PIPELINES.md: {env} unlocks role {roles[env]}, documented {row['role']}"
        if roles[env] in NEEDS_REVIEWERS:
            assert "required reviewers" in row["reviewers"].lower(), f"PIPELINES.md: {env} must have required reviewers"
        if any(w.startswith("deliver.yml") for w in used[env]):
            # Deploys and applies come from main only, whatever a branch's workflow says.
            assert row["deployment branches"] == "`main` only", f"PIPELINES.md: {env} must be deployable from main only"


INFRA_README = ROOT / "infra" / "README.md"


@pytest.mark.parametrize(
    "doc, heading",
    [(PIPELINES, "## What each role may do"), (INFRA_README, "## Access model")],
    ids=["PIPELINES.md", "infra/README.md"],
)
def test_every_role_is_documented_with_the_subjects_it_trusts(doc, heading):
    text = doc.read_text()
    name = doc.relative_to(ROOT)
    assert heading in text, f"{name} has no {heading!r} section"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        line = line.strip()
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    for role, subjects in trusted_subjects().items():
        assert role in rows, f"{name}: role {role} is missing from {heading!r}"
        documented = set(re.findall(r"`([^`]+)`", rows[role][1]))
        assert documented == subjects, f"{name}: {role} trusts {sorted(subjects)}, documented {sorted(documented)}"
        assert rows[role][2], f"{name}: say what {role} may do"


# --- delivery: the gate and the concurrency groups -----------------------------------------


def deliver() -> dict:
    return load(WORKFLOWS / "deliver.yml")


def upstream(jobs: dict, job_id: str) -> set[str]:
    needs = jobs[job_id].get("needs", [])
    needs = [needs] if isinstance(needs, str) else needs
    found = set(needs)
    for need in needs:
        found |= upstream(jobs, need)
    return found


def test_deliver_starts_only_from_a_completed_ci_run_or_by_hand():
    on = deliver()["on"]
    assert set(on) == {"workflow_run", "workflow_dispatch"}, f"deliver triggers: {sorted(on)}"
    assert on["workflow_run"]["workflows"] == ["ci"] and on["workflow_run"]["types"] == ["completed"]
    ci = load(WORKFLOWS / "ci.yml")
    assert ci["name"] == "ci", "workflow_run names the CI workflow by its name"


def test_every_deliver_job_waits_for_the_gate():
    jobs = deliver()["jobs"]
    gate = jobs["gate"]
    cond = " ".join(str(gate["if"]).split())
    for clause in (
        "github.event.workflow_run.conclusion == 'success'",
        "github.event.workflow_run.event == 'push'",
        "github.event.workflow_run.head_repository.full_name == github.repository",
    ):
        assert clause in cond, f"gate does not check {clause}"
    ungated = [job_id for job_id in jobs if job_id != "gate" and "gate" not in upstream(jobs, job_id)]
    assert not ungated, f"jobs that do not wait for the gate: {ungated}"


def test_deliver_builds_and_deploys_the_tested_commit():
    # On workflow_run, github.sha is main's head when the run starts, which may be a
    # newer, untested commit.
    tested = "${{ github.event.workflow_run.head_sha || github.sha }}"
    for job_id, job in deliver()["jobs"].items():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"].get("ref") == tested, f"deliver.yml:{job_id} checks out another commit"
        if "uses" in job:
            assert job["with"].get("ref") == tested, f"deliver.yml:{job_id} deploys another commit"
    called = load(WORKFLOWS / "deploy-environment.yml")
    for step in called["jobs"]["deploy"]["steps"]:
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"].get("ref") == "${{ inputs.ref }}"


def concurrency_groups() -> list[tuple[str, str, bool]]:
    """(where, group, cancel-in-progress) of every workflow- and job-level group."""
    groups = []
    for name, doc in workflows().items():
        if "concurrency" in doc:
            c = doc["concurrency"]
            groups.append((name, c if isinstance(c, str) else c["group"], bool(isinstance(c, dict) and c.get("cancel-in-progress"))))
        for job_id, job in doc.get("jobs", {}).items():
            if "concurrency" in job:
                c = job["concurrency"]
                groups.append(
                    (f"{name}:{job_id}", c if isinstance(c, str) else c["group"], bool(isinstance(c, dict) and c.get("cancel-in-progress")))
                )
    return groups


def test_no_workflow_wide_group_holds_a_delivery():
    # One group for the whole run meant a run waiting for the production approval held
    # back every later commit's staging deploy.
    assert "concurrency" not in deliver()
    assert "concurrency" not in load(WORKFLOWS / "deploy-environment.yml")


def test_staging_and_production_deploys_queue_separately_and_are_never_cancelled_halfway():
    job = load(WORKFLOWS / "deploy-environment.yml")["jobs"]["deploy"]
    group = job["concurrency"]["group"]
    assert "${{ inputs.environment }}" in group, "staging and production must not share a group"
    # A running helm upgrade is never cancelled; a newer commit replaces only a pending
    # one, so staging ends on the newest commit.
    assert job["concurrency"]["cancel-in-progress"] is False


def test_an_apply_run_is_never_in_a_group_that_could_cancel_it():
    # GitHub keeps one pending job per group and cancels the older one.
    jobs = deliver()["jobs"]
    assert "concurrency" not in jobs["apply"]
    for job_id in upstream(jobs, "apply"):
        assert "concurrency" not in jobs[job_id], f"deliver.yml:{job_id} runs before apply in a group"
    for where, group, _ in concurrency_groups():
        assert "apply" not in group.lower() or where.startswith("deliver.yml:apply"), (where, group)


def test_ci_cancels_only_superseded_runs_of_the_same_branch_or_pull_request():
    ci = load(WORKFLOWS / "ci.yml")
    assert "github.event.pull_request.number || github.ref" in ci["concurrency"]["group"]


@pytest.mark.parametrize("environment", ["staging", "production", "infrastructure"])
def test_delivery_environments_are_the_documented_ones(environment):
    assert environment in used_environments()
    assert environment in documented_environments()
