"""The workflows only use names that exist: Terraform outputs, chart values, files in this
repository, GitHub environments the AWS roles trust. Plus the security rules every
workflow keeps (pinned actions, no untrusted expressions in scripts, no credentials for
forks).

Run: pytest .github/tests (from any directory).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPTS = sorted((ROOT / ".github" / "scripts").glob("*"))
CHART = ROOT / "charts" / "order-service"

# Helm -f file per environment, as deploy-environment.yml maps them.
ENVIRONMENT_VALUES = {"staging": "values.staging.yaml", "production": "values.prod.yaml"}


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); give it back its name.
    doc = yaml.safe_load(path.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def triggers(doc: dict) -> set[str]:
    on = doc["on"]
    return set(on) if isinstance(on, (dict, list)) else {on}


def texts() -> dict[Path, str]:
    return {p: p.read_text() for p in [*WORKFLOWS, *SCRIPTS] if p.is_file()}


def run_blocks(doc: dict):
    for job_id, job in doc.get("jobs", {}).items():
        for step in job.get("steps", []):
            if "run" in step:
                yield job_id, step


def terraform_outputs(root: str) -> set[str]:
    names = set()
    for tf in (ROOT / root).glob("*.tf"):
        names.update(re.findall(r'^output\s+"([A-Za-z0-9_-]+)"', tf.read_text(), flags=re.M))
    return names


def test_workflows_exist():
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "deliver.yml", "preview.yml", "preview-sweep.yml"} <= names


# --- names that must exist elsewhere in the repository ------------------------------------


def test_every_terraform_output_read_exists():
    reads = set()
    for path, text in texts().items():
        for root, name in re.findall(r"terraform -chdir=(infra/[\w-]+) output (?:-raw |-json )?(\w+)", text):
            reads.add((root, name, path.name))
    assert reads, "expected the workflows to read Terraform outputs"
    missing = [
        f"{file}: {root} has no output {name!r}" for root, name, file in sorted(reads) if name not in terraform_outputs(root)
    ]
    assert not missing, "\n".join(missing)


def terraform_variables(root: str) -> set[str]:
    names = set()
    for tf in (ROOT / root).glob("*.tf"):
        names.update(re.findall(r'^variable\s+"([A-Za-z0-9_-]+)"', tf.read_text(), flags=re.M))
    return names


def test_every_terraform_var_passed_is_declared():
    passed = set()
    for path, text in texts().items():
        # A terraform command with its backslash-continued lines.
        for m in re.finditer(r"terraform -chdir=\"?(infra/[\w-]+)\"? (?:plan|apply|destroy)(?:[^\n]*\\\n)*[^\n]*", text):
            for name in re.findall(r'-var "?(\w+)=', m.group(0)):
                passed.add((m.group(1), name, path.name))
    assert passed, "expected the preview workflow to pass -var values"
    missing = [
        f"{file}: {root} declares no variable {name!r}"
        for root, name, file in sorted(passed)
        if name not in terraform_variables(root)
    ]
    assert not missing, "\n".join(missing)


def test_every_tf_var_environment_variable_is_declared_by_a_root():
    declared = terraform_variables("infra/aws") | terraform_variables("infra/addons")
    used = set()
    for text in texts().values():
        used.update(re.findall(r"\bTF_VAR_(\w+):", text))
    assert used, "expected deliver.yml to pass Terraform inputs as TF_VAR_*"
    assert not (used - declared), f"TF_VAR_* that no root declares: {sorted(used - declared)}"


def schema_has(schema: dict, dotted: str) -> bool:
    """Whether the values schema describes a --set key; `list[0].name` looks into the items."""
    node = schema
    for part in re.sub(r"\[\d+\]", ".[]", dotted).split("."):
        if part == "[]":
            if "items" not in node:
                return False
            node = node["items"]
            continue
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


def test_every_helm_set_key_is_in_the_values_schema():
    schema_path = CHART / "values.schema.json"
    assert schema_path.is_file(), f"missing {schema_path.relative_to(ROOT)}"
    schema = json.loads(schema_path.read_text())
    keys = set()
    for text in texts().values():
        keys.update(re.findall(r"--set(?:-string)? \"?([A-Za-z0-9_.\[\]]+)=", text))
    assert keys, "expected the workflows to set chart values"
    missing = sorted(k for k in keys if not schema_has(schema, k))
    assert not missing, f"--set keys absent from values.schema.json: {missing}"
    # The deploy sets these (issue 11: ECR by default, Docker Hub with a pull secret).
    assert {"imagePullSecrets[0].name", "prometheusRule.runbookUrl"} <= keys, sorted(keys)


def test_schema_lookup_reads_list_items():
    schema = {"properties": {"a": {"type": "array", "items": {"properties": {"name": {}}}}, "b": {"type": "string"}}}
    assert schema_has(schema, "a[0].name")
    assert not schema_has(schema, "a[0].other")
    assert not schema_has(schema, "b[0].name")


def test_every_environment_values_file_exists():
    for env, name in ENVIRONMENT_VALUES.items():
        assert (CHART / name).is_file(), f"{env} deploys with {name}, which does not exist"


PATH_RE = re.compile(r"(?<![\w/$.-])(?:\./)?((?:\.ci|\.github/scripts|\.github/workflows|charts|infra)/[\w./-]*[\w])")


def test_every_repository_path_used_exists():
    used = set()
    for path, text in texts().items():
        for match in PATH_RE.finditer(text):
            # Skip templated paths (values.${{ … }}.yaml), S3 keys (infra/aws.tfstate) and
            # files the workflows create (plans).
            rest = text[match.end() : match.end() + 3]
            if rest.startswith(("${", ".${")) or match.group(1).endswith((".tfstate", "/tfplan", "/tfplan.enc", "/ci.auto.tfvars")):
                continue
            used.add((match.group(1), path.name))
    assert used
    missing = [f"{file}: {p}" for p, file in sorted(used) if not (ROOT / p).exists()]
    assert not missing, "paths used by the workflows that do not exist:\n" + "\n".join(missing)


def documented_settings(kind: str) -> dict[str, str]:
    """Rows of PIPELINES.md's settings table whose first column is `kind`: name -> value."""
    text = (ROOT / ".github" / "PIPELINES.md").read_text()
    assert "## Settings to create in GitHub" in text
    section = text.split("## Settings to create in GitHub", 1)[1].split("\n## ", 1)[0]
    rows, header = {}, None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells[0]
            continue
        if header == kind and not set(cells[0]) <= set("-"):
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[-1]
    return rows


def test_every_repository_variable_a_workflow_reads_is_documented():
    used = set()
    for path in WORKFLOWS:
        used.update(re.findall(r"\bvars\.(\w+)", path.read_text()))
    documented = documented_settings("repository variable")
    assert {"ECR_REPOSITORY_URL", "AWS_PUBLISH_ROLE_ARN", "IMAGE_REGISTRY"} <= used
    missing = sorted(used - set(documented))
    assert not missing, f"repository variables read by the workflows but not in PIPELINES.md's settings: {missing}"


def test_variables_documented_as_terraform_outputs_name_existing_outputs():
    outputs = terraform_outputs("infra/aws")
    named = {
        (variable, output)
        for variable, value in documented_settings("repository variable").items()
        for output in re.findall(r"infra/aws output `(\w+)`", value)
    }
    assert ("ECR_REPOSITORY_URL", "ecr_repository_url") in named
    missing = sorted(f"{variable}: infra/aws has no output {output!r}" for variable, output in named if output not in outputs)
    assert not missing, "\n".join(missing)


# GitHub environments, OIDC subjects and role trust: test_trust_contract.py.


# --- rules every workflow keeps ------------------------------------------------------------


def test_actions_are_pinned_to_a_commit_with_a_version_comment():
    bad = []
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:- )?uses:\s*(\S+)(.*)", line)
            if not m or m.group(1).startswith("./"):
                continue
            if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", m.group(1)) or not re.match(
                r"\s+# v\d+\.\d+\.\d+", m.group(2)
            ):
                bad.append(f"{path.name}: {line.strip()}")
    assert not bad, "actions not pinned as <action>@<40-hex sha> # vX.Y.Z:\n" + "\n".join(bad)


def test_no_expressions_inside_scripts():
    # Values reach scripts through env:, so no input can become shell code.
    bad = [
        f"{path.name}:{job_id}: {step.get('name', step['run'][:40])}"
        for path in WORKFLOWS
        for job_id, step in run_blocks(load(path))
        if "${{" in step["run"]
    ]
    assert not bad, "\n".join(bad)


def test_permissions_start_empty_and_checkouts_keep_no_token():
    for path in WORKFLOWS:
        doc = load(path)
        assert doc.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}}"
        assert "pull_request_target" not in triggers(doc), f"{path.name}: pull_request_target is not used here"
        for job_id, job in doc["jobs"].items():
            assert "permissions" in job, f"{path.name}:{job_id}: set job permissions explicitly"
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, (
                        f"{path.name}:{job_id}: checkout without persist-credentials: false"
                    )


FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"


def test_previews_never_give_credentials_to_forks():
    doc = load(ROOT / ".github" / "workflows" / "preview.yml")
    jobs = doc["jobs"]

    def guarded(job_id: str) -> bool:
        job = jobs[job_id]
        cond = str(job.get("if", ""))
        if FORK_GUARD in cond:
            return True
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        # Without always() a job is skipped when what it needs was skipped.
        return "always()" not in cond and any(guarded(n) for n in needs)

    for job_id, job in jobs.items():
        perms = job.get("permissions", {})
        if perms.get("id-token") == "write" or perms.get("pull-requests") == "write":
            assert guarded(job_id), f"preview.yml:{job_id} holds credentials but may run for a fork"


# --- job outputs never carry a secret ------------------------------------------------------

SECRET_REF = re.compile(r"\$\{\{[^}]*\b(secrets\.\w+|secrets\[|github\.token)")
OUTPUT_SOURCES = re.compile(r"\b(steps|needs)\.[\w-]+\.outputs\.[\w-]+|\b(vars|github|inputs|matrix)\.[\w.-]+")


def all_jobs():
    for path in WORKFLOWS:
        doc = load(path)
        for job_id, job in doc.get("jobs", {}).items():
            yield path.name, doc, job_id, job


def test_no_job_output_is_derived_from_a_secret():
    # The runner masks every secret a job receives and drops any output that contains
    # one ("Skip output 'x' since it may contain secret"): a registry user `acme` empties
    # the output docker.io/acme/order-service. So a job with outputs receives no secret
    # at all, and its outputs come only from vars, github, inputs, step or job outputs.
    problems = []
    for workflow, doc, job_id, job in all_jobs():
        if not job.get("outputs"):
            continue
        for ref in sorted(set(SECRET_REF.findall(yaml.safe_dump(job)))):
            problems.append(f"{workflow}:{job_id} has outputs and receives {ref}")
        for ref in sorted(set(SECRET_REF.findall(yaml.safe_dump(doc.get("env", {}))))):
            problems.append(f"{workflow}:{job_id} has outputs and the workflow env passes it {ref}")
        for name, value in job["outputs"].items():
            for expr in re.findall(r"\$\{\{(.*?)\}\}", str(value)):
                rest = OUTPUT_SOURCES.sub("", expr)
                # What is left may only be literals and operators.
                if re.search(r"[A-Za-z_]\w*\s*\.", re.sub(r"'[^']*'", "", rest)):
                    problems.append(f"{workflow}:{job_id} output {name} reads {expr.strip()!r}")
    assert not problems, "\n".join(problems)


# --- previews use infra/aws's name ---------------------------------------------------------

PREVIEW_SCRIPTS = ("preview-deploy.sh", "preview-destroy.sh", "sweep-previews.sh")


def test_the_preview_role_is_named_after_infra_aws_name():
    text = (ROOT / "infra" / "aws" / "github_oidc.tf").read_text()
    assert 'name                 = "${var.name}-github-${replace(each.key, "_", "-")}"' in text
    assert re.search(r"^\s+preview\s+=", text, re.M), "github_roles has no preview role"
    assert re.search(r'^variable "name"', (ROOT / "infra" / "preview" / "variables.tf").read_text(), re.M)


@pytest.mark.parametrize(
    "arn, name",
    [
        ("arn:aws:iam::111122223333:role/order-service-github-preview", "order-service"),
        ("arn:aws:iam::111122223333:role/acme-shop-github-preview", "acme-shop"),
        ("arn:aws-us-gov:iam::111122223333:role/acme-github-preview", "acme"),
        ("arn:aws:iam::111122223333:role/acme-github-plan", None),
        ("order-service", None),
    ],
)
def test_preview_name_reads_the_name_from_the_role_arn(arn, name):
    import subprocess

    result = subprocess.run(
        [ROOT / ".github" / "scripts" / "preview-name.sh", arn], capture_output=True, text=True
    )
    if name is None:
        assert result.returncode != 0
        assert result.stderr.startswith("::error::"), result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name


@pytest.mark.parametrize("workflow", ["preview.yml", "preview-sweep.yml"])
def test_every_preview_terraform_run_gets_the_name_from_the_preview_role(workflow):
    doc = load(ROOT / ".github" / "workflows" / workflow)
    checked = 0
    for job_id, job in doc["jobs"].items():
        named = False
        for step in job.get("steps", []):
            run = step.get("run", "")
            if "preview-name.sh" in run:
                assert step.get("env", {}).get("PREVIEW_ROLE_ARN") == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
                assert 'TF_VAR_name=$name" >> "$GITHUB_ENV"' in run
                named = True
            if any(s in run for s in PREVIEW_SCRIPTS) or "-chdir=infra/preview" in run:
                assert named, f"{workflow}:{job_id}: `{step.get('name')}` runs infra/preview before the name is set"
                checked += 1
    assert checked, f"{workflow} runs no preview terraform"
    for script in PREVIEW_SCRIPTS[:2]:
        assert '"${TF_VAR_name:?' in (ROOT / ".github" / "scripts" / script).read_text(), script


# --- Terraform providers: every platform, every root ---------------------------------------

PLATFORMS = {"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64"}
TF_ROOTS = sorted(p.parent.name for p in (ROOT / "infra").glob("*/versions.tf"))


def ci_steps() -> dict[str, list[dict]]:
    return {job_id: job.get("steps", []) for job_id, job in load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"].items()}


def test_lock_providers_covers_every_platform_and_root():
    text = (ROOT / ".github" / "scripts" / "lock-providers.sh").read_text()
    (line,) = re.findall(r"^platforms=\((.*)\)$", text, re.M)
    assert set(line.split()) == PLATFORMS
    assert 'for versions in infra/*/versions.tf; do' in text
    assert TF_ROOTS == ["addons", "aws", "preview"]


def test_a_ci_job_fails_when_a_committed_lock_file_lacks_a_platform():
    for job_id, steps in ci_steps().items():
        runs = [s.get("run", "") for s in steps]
        lock = [i for i, r in enumerate(runs) if ".github/scripts/lock-providers.sh" in r]
        diff = [i for i, r in enumerate(runs) if "git diff --exit-code -- 'infra/*/.terraform.lock.hcl'" in r]
        if lock:
            assert diff and diff[0] > lock[0], f"ci.yml:{job_id} locks providers but never compares with the committed files"
            return
    pytest.fail("no ci.yml job runs .github/scripts/lock-providers.sh")


def test_the_first_apply_records_the_checksums_before_the_first_init():
    text = (ROOT / "infra" / "README.md").read_text()
    first_apply = text.split("## First apply", 1)[1]
    assert ".github/scripts/lock-providers.sh" in first_apply
    assert first_apply.index(".github/scripts/lock-providers.sh") < first_apply.index("terraform init")


def test_ci_mirrors_the_providers_of_every_root_so_each_is_validated():
    (step,) = [s for s in ci_steps()["test"] if s.get("name") == "Terraform provider mirror"]
    (loop,) = re.findall(r"for versions in (\S+); do", step["run"])
    roots = {p.parent.name for p in ROOT.glob(loop)}
    assert roots == set(TF_ROOTS), f"ci.yml mirrors {sorted(roots)}, the roots are {TF_ROOTS}"
    stage = (ROOT / ".ci" / "stages" / "infra.sh").read_text()
    assert 'for versions in "$ROOT"/infra/*/versions.tf; do' in stage
    assert 'if [ "${GITHUB_ACTIONS:-}" = true ]; then' in stage
