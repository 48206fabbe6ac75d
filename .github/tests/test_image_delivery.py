"""Where deliver.yml pushes the image and how the deploys pull it, by running the steps.

The steps' own scripts run with bash, their `env:` and `if:` evaluated by
workflow_graph.py's expression engine from the repository variables a user sets:

- by default the image goes to the ECR repository of infra/aws, with the publish role,
  under the commit-SHA tag only (the repository's tags are immutable: no latest, no cache
  tag); Docker Hub, selected with IMAGE_REGISTRY=dockerhub, uses the registry secrets;
- a re-run of a commit whose image is already in ECR pushes nothing (checked against
  moto's ECR, which refuses a second push of an immutable tag as ECR does);
- the deploy job names a pull secret only for Docker Hub, writes it without putting the
  token on a command line, and the chart rendered from the workflow's exact `helm upgrade`
  arguments carries imagePullSecrets and the runbook URL at the deployed commit.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "charts" / "tests"))

from workflow_graph import Parser, Status, evaluate, load, render, truthy, workflow_run  # noqa: E402

REGION = "eu-west-1"
ECR_URL = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/order-service"
EVENT = workflow_run("ci", "success")
COMMIT = EVENT.payload["workflow_run"]["head_sha"]
SECRETS = {"REGISTRY_USERNAME": "acme", "REGISTRY_TOKEN": "dckr_pat_never-on-a-command-line"}
# What a user sets for each registry (PIPELINES.md, "Settings to create in GitHub").
ECR_VARS = {"AWS_REGION": REGION, "ECR_REPOSITORY_URL": ECR_URL, "AWS_PUBLISH_ROLE_ARN": "arn:aws:iam::123456789012:role/order-service-github-publish"}
DOCKERHUB_VARS = {"AWS_REGION": REGION, "IMAGE_REGISTRY": "dockerhub", "IMAGE_REPOSITORY": "acme/order-service"}


# --- running steps -------------------------------------------------------------------------


def expression(text, context: dict, step_if: bool = False):
    if step_if:
        # A step's if: without a status function means success() && (...); every earlier
        # step is taken to have succeeded.
        node = Parser(str(text).removeprefix("${{").removesuffix("}}")).parse()
        return truthy(evaluate(("and", ("call", "success", []), node), context, Status()))
    return render(text, context)


def context(variables: dict, needs: dict | None = None, inputs: dict | None = None, steps: dict | None = None) -> dict:
    return {
        "github": EVENT.github(),
        "vars": variables,
        "secrets": SECRETS,
        "needs": needs or {},
        "inputs": inputs or {},
        "steps": steps or {},
        "env": {},
    }


def runs(step: dict, ctx: dict) -> bool:
    return "if" not in step or expression(step["if"], ctx, step_if=True)


def read_outputs(path: Path) -> dict[str, str]:
    outputs, lines = {}, path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            outputs[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        name, value = line.split("=", 1)
        outputs[name] = value
        i += 1
    return outputs


def run_step(step: dict, ctx: dict, tmp_path: Path, extra_env: dict | None = None, job_env: dict | None = None):
    """Run a step's script as the runner does (bash -e -o pipefail), from the repository root."""
    output = tmp_path / f"output-{os.urandom(4).hex()}"
    output.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GITHUB_"))}
    for key, value in {**(job_env or {}), **step.get("env", {})}.items():
        env[key] = "" if (v := expression(value, ctx)) is None else str(v)
    env.update({"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    env.update(extra_env or {})
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, read_outputs(output)


def step_named(job: dict, name: str) -> dict:
    matches = [s for s in job["steps"] if s.get("name") == name or s.get("id") == name]
    assert len(matches) == 1, f"expected one step {name!r}"
    return matches[0]


def step_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def deliver_jobs() -> dict:
    return load(WORKFLOWS / "deliver.yml")["jobs"]


def names(variables: dict, tmp_path: Path) -> dict[str, str]:
    """The names job of deliver.yml, run: its outputs as the later jobs see them."""
    job = deliver_jobs()["names"]
    ctx = context(variables)
    result, outputs = run_step(step_named(job, "names"), ctx, tmp_path)
    assert result.returncode == 0, result.stderr
    steps = {"names": {"outputs": outputs}}
    return {k: expression(v, context(variables, steps=steps)) for k, v in job["outputs"].items()}


# --- the names job -------------------------------------------------------------------------


def test_the_image_goes_to_ecr_by_default_under_its_commit_sha(tmp_path):
    out = names(ECR_VARS, tmp_path)
    assert out["registry"] == "ecr"
    assert out["repository"] == ECR_URL
    assert out["login-registry"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert out["tag"] == COMMIT
    # Immutable tags: exactly one, the commit; no latest that a later push would move.
    assert out["tags"].splitlines() == [f"{ECR_URL}:{COMMIT}"]
    assert out["pull-secret"] == "", "the nodes read ECR with their own role"


@pytest.mark.parametrize("value", ["dockerhub", "docker.io"])
def test_docker_hub_is_the_option_selected_by_a_repository_variable(tmp_path, value):
    out = names({**DOCKERHUB_VARS, "IMAGE_REGISTRY": value}, tmp_path)
    assert out["registry"] == "dockerhub"
    assert out["repository"] == "docker.io/acme/order-service"
    assert out["login-registry"] == "docker.io"
    assert out["tags"].splitlines() == [f"docker.io/acme/order-service:{COMMIT}", "docker.io/acme/order-service:latest"]
    assert out["pull-secret"] == "order-service-registry"


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"AWS_REGION": REGION}, "set the ECR_REPOSITORY_URL repository variable"),
        ({**ECR_VARS, "ECR_REPOSITORY_URL": "order-service"}, "ECR_REPOSITORY_URL must look like"),
        ({"IMAGE_REGISTRY": "dockerhub"}, "set the IMAGE_REPOSITORY repository variable"),
        ({"IMAGE_REGISTRY": "quay.io", "IMAGE_REPOSITORY": "acme/order-service"}, "IMAGE_REGISTRY must be ecr"),
    ],
    ids=["ecr-without-url", "ecr-url-not-ecr", "dockerhub-without-repository", "unknown-registry"],
)
def test_a_missing_or_wrong_setting_stops_the_names_job_with_one_line(tmp_path, variables, message):
    result, outputs = run_step(step_named(deliver_jobs()["names"], "names"), context(variables), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
    assert not outputs


def test_the_names_job_reads_no_secret_so_its_outputs_survive():
    # The runner drops an output that contains a masked value; the ECR URL comes from a
    # variable, not from the login step's output (which could carry the masked account).
    job = deliver_jobs()["names"]
    text = json.dumps(job)
    assert "secrets." not in text and "id-token" not in text and "steps.login" not in text


# --- the image job -------------------------------------------------------------------------


def image_steps(variables: dict, tmp_path: Path, pushed: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """The image job's context and the steps that run, given the names job's real outputs."""
    job = deliver_jobs()["image"]
    needs = {"names": {"result": "success", "outputs": names(variables, tmp_path)}}
    ctx = context(variables, needs=needs, steps={"pushed": {"outputs": pushed or {"push": "true"}}})
    return ctx, [s for s in job["steps"] if runs(s, ctx)]


def pushed_tags(ctx: dict, steps: list[dict]) -> list[str]:
    builds = [s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    if not builds:
        return []
    (build,) = builds
    assert expression(build["with"]["push"], ctx) is True
    return [t.strip() for t in str(expression(build["with"]["tags"], ctx)).splitlines() if t.strip()]


def test_the_image_job_pushes_to_ecr_with_the_publish_role_and_no_registry_secret(tmp_path):
    ctx, steps = image_steps(ECR_VARS, tmp_path)
    (aws,) = [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PUBLISH_ROLE_ARN }}"
    assert expression(aws["with"]["aws-region"], ctx) == REGION
    assert any(str(s.get("uses", "")).startswith("aws-actions/amazon-ecr-login@") for s in steps)
    # The Docker Hub login, and with it the registry secrets, stays out of an ECR push.
    assert not [s for s in steps if "secrets." in json.dumps(s)]
    assert pushed_tags(ctx, steps) == [f"{ECR_URL}:{COMMIT}"]


def test_nothing_mutable_is_pushed_to_ecr(tmp_path):
    ctx, steps = image_steps(ECR_VARS, tmp_path)
    (build,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    tags = pushed_tags(ctx, steps)
    assert all(t.rsplit(":", 1)[1] == COMMIT for t in tags), tags
    # No registry cache: cache-to type=registry would push a moving tag (refused by ECR).
    for key in ("cache-from", "cache-to"):
        value = str(expression(build["with"].get(key, ""), ctx))
        assert "type=registry" not in value and ECR_URL not in value, f"{key}: {value}"
        assert value.startswith("type=gha"), f"{key}: {value}"
    outputs = build["with"].get("outputs", "")
    assert not outputs, "push through tags only"


def test_the_image_job_pushes_to_docker_hub_with_the_registry_secrets(tmp_path):
    ctx, steps = image_steps(DOCKERHUB_VARS, tmp_path)
    assert not [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/")]
    (login,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/login-action@")]
    assert expression(login["with"]["registry"], ctx) == "docker.io"
    assert expression(login["with"]["username"], ctx) == SECRETS["REGISTRY_USERNAME"]
    assert expression(login["with"]["password"], ctx) == SECRETS["REGISTRY_TOKEN"]
    assert pushed_tags(ctx, steps) == [f"docker.io/acme/order-service:{COMMIT}", "docker.io/acme/order-service:latest"]


# --- a re-run against moto's ECR -----------------------------------------------------------


@pytest.fixture(scope="module")
def ecr(moto):
    if shutil.which("aws") is None:
        pytest.skip("needs the AWS CLI")
    client = moto.client("ecr")
    # As infra/aws/ecr.tf creates it.
    repository = client.create_repository(repositoryName="order-service", imageTagMutability="IMMUTABLE")["repository"]
    assert repository["repositoryUri"] == ECR_URL
    return client, moto.env()


def push_manifest(client, tag: str, marker: str) -> None:
    # What a push ends with: the tagged index (the layers do not matter here).
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [], "annotations": {"m": marker}}
    client.put_image(repositoryName="order-service", imageManifest=json.dumps(manifest), imageTag=tag)


def check_pushed(ecr, tmp_path: Path, variables: dict = ECR_VARS):
    _, env = ecr
    job = deliver_jobs()["image"]
    needs = {"names": {"result": "success", "outputs": names(variables, tmp_path)}}
    ctx = context(variables, needs=needs)
    return run_step(step_named(job, "pushed"), ctx, tmp_path, extra_env=env)


def test_a_rerun_of_a_pushed_commit_pushes_nothing(ecr, tmp_path):
    client, _ = ecr
    result, outputs = check_pushed(ecr, tmp_path)
    assert result.returncode == 0, result.stderr
    assert outputs == {"push": "true"}, "the first run of a commit builds and pushes"
    ctx, steps = image_steps(ECR_VARS, tmp_path, pushed=outputs)
    assert pushed_tags(ctx, steps) == [f"{ECR_URL}:{COMMIT}"]

    push_manifest(client, COMMIT, "first run")
    # Why the re-run must not push: ECR refuses a second push of an immutable tag.
    with pytest.raises(client.exceptions.ImageAlreadyExistsException):
        push_manifest(client, COMMIT, "re-run")

    result, outputs = check_pushed(ecr, tmp_path)
    assert result.returncode == 0, result.stderr
    assert outputs == {"push": "false"}
    ctx, steps = image_steps(ECR_VARS, tmp_path, pushed=outputs)
    assert pushed_tags(ctx, steps) == [], "a re-run built and pushed again"
    assert not [s for s in steps if str(s.get("uses", "")).startswith("docker/setup-buildx-action@")]


def test_a_registry_the_publish_role_cannot_read_fails_the_check_by_name(ecr, tmp_path):
    variables = {**ECR_VARS, "ECR_REPOSITORY_URL": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/not-created"}
    result, outputs = check_pushed(ecr, tmp_path, variables)
    assert result.returncode == 1
    assert "RepositoryNotFoundException" in result.stderr and "not-created" in result.stderr
    assert "push" not in outputs


def test_docker_hub_tags_are_pushed_again_on_a_rerun(tmp_path):
    # Mutable there: no registry call, the push replaces the tag.
    job = deliver_jobs()["image"]
    needs = {"names": {"result": "success", "outputs": names(DOCKERHUB_VARS, tmp_path)}}
    result, outputs = run_step(step_named(job, "pushed"), context(DOCKERHUB_VARS, needs=needs), tmp_path, extra_env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert outputs == {"push": "true"}


# --- the deploy: pull secret, helm arguments, the rendered chart ---------------------------


def stand_in(tmp_path: Path, name: str) -> Path:
    """An executable `name` on PATH that records its arguments and stdin, one JSON line per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.calls"
    script = bin_dir / name
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "stdin = '' if sys.stdin.isatty() else sys.stdin.read()\n"
        f"open({str(log)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'stdin': stdin}}) + '\\n')\n"
        "if sys.argv[1:2] == ['create'] and '--dry-run=client' in sys.argv:\n"
        "    import base64, re\n"
        "    path = [a.split('=', 2)[2] for a in sys.argv if a.startswith('--from-file=')][0]\n"
        "    data = base64.b64encode(open(path, 'rb').read()).decode()\n"
        "    print(f'apiVersion: v1\\nkind: Secret\\nmetadata:\\n  name: {sys.argv[4]}\\ntype: kubernetes.io/dockerconfigjson\\ndata:\\n  .dockerconfigjson: {data}')\n"
    )
    script.chmod(0o755)
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def deploy_call(variables: dict, environment: str, tmp_path: Path) -> tuple[dict, dict]:
    """deliver.yml's call of deploy-environment.yml: the inputs and secrets it passes."""
    job = deliver_jobs()[environment]
    needs = {
        "names": {"result": "success", "outputs": names(variables, tmp_path)},
        "settings": {"result": "success", "outputs": {"region": REGION, "cluster-name": "order-service", environment: json.dumps(SETTINGS)}},
        "image": {"result": "success", "outputs": {}},
        "staging": {"result": "success", "outputs": {}},
    }
    ctx = context(variables, needs=needs)
    inputs = {k: expression(v, ctx) for k, v in job["with"].items()}
    secrets = {k: expression(v, ctx) for k, v in (job.get("secrets") or {}).items()}
    return inputs, secrets


SETTINGS = {
    "role_arn": "arn:aws:iam::123456789012:role/order-service-staging",
    "secret_name": "order-service/staging",
    "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/staging-cert",
    "host": "staging.orders.example.com",
}


def deploy_steps(variables: dict, environment: str, tmp_path: Path):
    inputs, secrets = deploy_call(variables, environment, tmp_path)
    called = load(WORKFLOWS / "deploy-environment.yml")
    declared = called["on"]["workflow_call"]
    for name, spec in declared["inputs"].items():
        inputs.setdefault(name, spec.get("default", ""))
    assert set(secrets) <= set(declared.get("secrets", {})), "deliver.yml passes a secret deploy-environment.yml does not declare"
    job = called["jobs"]["deploy"]
    ctx = context(variables, inputs=inputs)
    ctx["secrets"] = {k: v or "" for k, v in secrets.items()}
    job_env = {k: expression(v, ctx) for k, v in job.get("env", {}).items()}
    return ctx, job, job_env, inputs, secrets


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_an_ecr_deploy_gets_no_registry_secret_and_no_pull_secret(tmp_path, environment):
    ctx, job, _, inputs, secrets = deploy_steps(ECR_VARS, environment, tmp_path)
    assert inputs["image-repository"] == ECR_URL and inputs["image-tag"] == COMMIT
    assert inputs["image-pull-secret"] == ""
    assert not any(secrets.values()), f"the Docker Hub login reaches an ECR deploy: {sorted(k for k, v in secrets.items() if v)}"
    assert not runs(step_named(job, "Image pull secret"), ctx)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_a_docker_hub_deploy_writes_the_pull_secret_without_the_token_on_a_command_line(tmp_path, environment):
    ctx, job, job_env, inputs, secrets = deploy_steps(DOCKERHUB_VARS, environment, tmp_path)
    assert inputs["image-pull-secret"] == "order-service-registry"
    assert secrets == SECRETS
    step = step_named(job, "Image pull secret")
    assert runs(step, ctx)
    log = stand_in(tmp_path, "kubectl")
    result, _ = run_step(step, ctx, tmp_path, job_env=job_env, extra_env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    create, apply = calls(log)
    for call in (create, apply):
        assert SECRETS["REGISTRY_TOKEN"] not in " ".join(call["argv"]), call["argv"]
    assert create["argv"][:4] == ["create", "secret", "generic", "order-service-registry"]
    assert "--namespace" in create["argv"] and create["argv"][create["argv"].index("--namespace") + 1] == environment
    assert apply["argv"][0] == "apply"
    secret = apply["stdin"]
    data = secret.split(".dockerconfigjson: ", 1)[1].strip()
    config = json.loads(base64.b64decode(data))
    auth = base64.b64decode(config["auths"]["https://index.docker.io/v1/"]["auth"]).decode()
    assert auth == f"{SECRETS['REGISTRY_USERNAME']}:{SECRETS['REGISTRY_TOKEN']}"


def test_a_docker_hub_deploy_without_the_registry_secrets_stops_with_one_line(tmp_path):
    ctx, job, job_env, _, _ = deploy_steps(DOCKERHUB_VARS, "staging", tmp_path)
    ctx["secrets"] = {"REGISTRY_USERNAME": "", "REGISTRY_TOKEN": ""}
    stand_in(tmp_path, "kubectl")
    result, _ = run_step(step_named(job, "Image pull secret"), ctx, tmp_path, job_env=job_env, extra_env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert result.returncode != 0
    assert "set the REGISTRY_USERNAME secret" in result.stderr


def helm_values(argv: list[str]) -> dict:
    """The values of `--set-string k.a[0].b=v` arguments, nested as helm nests them."""
    values: dict = {}
    for i, arg in enumerate(argv):
        if arg != "--set-string":
            continue
        key, value = argv[i + 1].split("=", 1)
        node: dict | list = values
        parts = key.replace("]", "").replace("[", ".").split(".")
        for part, following in zip(parts, parts[1:] + [None], strict=True):
            if following is None:
                node[part] = value  # type: ignore[index]
            elif following.isdigit():
                node = node.setdefault(part, [])  # type: ignore[union-attr]
            elif part.isdigit():
                while len(node) <= int(part):  # type: ignore[arg-type]
                    node.append({})  # type: ignore[union-attr]
                node = node[int(part)]  # type: ignore[index]
            else:
                node = node.setdefault(part, {})  # type: ignore[union-attr]
    return values


def helm_upgrade(variables: dict, environment: str, tmp_path: Path) -> tuple[list[str], dict]:
    ctx, job, job_env, _, _ = deploy_steps(variables, environment, tmp_path)
    log = stand_in(tmp_path, "helm")
    result, _ = run_step(step_named(job, "upgrade"), ctx, tmp_path, job_env=job_env, extra_env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    (call,) = calls(log)
    return call["argv"], helm_values(call["argv"])


@pytest.mark.parametrize("variables", [ECR_VARS, DOCKERHUB_VARS], ids=["ecr", "dockerhub"])
def test_the_helm_upgrade_arguments_render_the_pull_secret_and_the_runbook_url(tmp_path, variables):
    import render as chart  # charts/tests/render.py (helm-python-sdk, installed by the workflows stage)
    argv, values = helm_upgrade(variables, "staging", tmp_path)
    assert argv[:3] == ["upgrade", "--install", "order-service"]
    runbook = f"https://github.com/acme/order-service/blob/{COMMIT}/charts/order-service/README.md"
    assert values["prometheusRule"]["runbookUrl"] == runbook
    assert values["image"] == {"repository": names(variables, tmp_path)["repository"], "tag": COMMIT}

    objects = chart.render("staging", values)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pull_secrets = deployment["spec"]["template"]["spec"].get("imagePullSecrets")
    if variables is DOCKERHUB_VARS:
        assert pull_secrets == [{"name": "order-service-registry"}]
    else:
        assert not pull_secrets
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{values['image']['repository']}:{COMMIT}"
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a["annotations"]["runbook_url"].startswith(runbook + "#") for a in alerts), [
        a["annotations"].get("runbook_url") for a in alerts
    ]


def test_helm_values_parser_nests_like_helm():
    argv = shlex.split("--set-string a.b=1 --set-string 'imagePullSecrets[0].name=x' --set-string c=d=e")
    assert helm_values(argv) == {"a": {"b": "1"}, "imagePullSecrets": [{"name": "x"}], "c": "d=e"}


# --- both node architectures ---------------------------------------------------------------


def test_the_image_is_published_for_both_node_architectures_with_sbom_and_provenance(tmp_path):
    ctx, steps = image_steps(ECR_VARS, tmp_path)
    (build,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    assert set(str(build["with"]["platforms"]).split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["with"]["sbom"] is True
    assert build["with"]["provenance"] == "mode=max"
    # infra/aws offers nodes of both architectures.
    variables = (ROOT / "infra" / "aws" / "variables.tf").read_text()
    assert "AL2023_ARM_64_STANDARD" in variables and "AL2023_x86_64_STANDARD" in variables


def test_the_build_stage_runs_on_the_builder_and_compiles_for_the_target():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM --platform=$BUILDPLATFORM rust:" in dockerfile, "an emulated build stage would take hours"
    assert "ARG TARGETARCH" in dockerfile


def test_ci_checks_the_build_stage_on_an_arm64_machine():
    jobs = load(WORKFLOWS / "ci.yml")["jobs"]
    arm = [
        job for job in jobs.values()
        if str(job.get("runs-on", "")).endswith("-arm")
        and any(s.get("run") == "./.ci/test image" and s.get("env", {}).get("IMAGE_PLATFORM") == "linux/arm64"
                for s in job["steps"])
    ]  # fmt: skip
    assert arm, "no ci.yml job runs the image stage for linux/arm64 on an arm64 runner"
