"""A real `terraform apply` / `plan` / `destroy` of a root against moto server.

The root's *.tf files are copied into a temporary directory with a local backend, the AWS
provider is pointed at moto through AWS_ENDPOINT_URL, and terraform itself (from the
filesystem mirror, like .ci/stages/infra.sh) does the rest. Only resource types moto serves
are applied; the caller targets out the others.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
from typing import Any

# moto reads these when it is imported: attachable AWS-managed policies
# (AdministratorAccess, AmazonEKSClusterPolicy, ...) and ACM certificates that pass DNS
# validation at once instead of after a minute.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "0")

from moto.server import ThreadedMotoServer  # noqa: E402

MIRROR = pathlib.Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _echo_lambda_logging_config() -> None:
    """moto 5 drops a function's LoggingConfig, which AWS stores and returns: without it
    every plan after an apply would show a change that AWS never would. Store and return
    it, the one gap of moto that infra/preview runs into."""
    from moto.awslambda.models import LambdaFunction

    if getattr(LambdaFunction, "_echoes_logging_config", False):
        return
    init, get_configuration = LambdaFunction.__init__, LambdaFunction.get_configuration

    def patched_init(self, account_id, spec, *args, **kwargs):  # type: ignore[no-untyped-def]
        init(self, account_id, spec, *args, **kwargs)
        self.logging_config = spec.get("LoggingConfig")

    def patched_get_configuration(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        config = get_configuration(self, *args, **kwargs)
        if getattr(self, "logging_config", None):
            config["LoggingConfig"] = self.logging_config
        return config

    LambdaFunction.__init__ = patched_init
    LambdaFunction.get_configuration = patched_get_configuration
    LambdaFunction._echoes_logging_config = True


class Moto:
    """moto server on a free loopback port, stopped by stop()."""

    def __init__(self) -> None:
        self.port = free_port()
        # Quiet: werkzeug logs every request to stderr otherwise.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _echo_lambda_logging_config()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # Servers in one process share moto's backends: start from an empty account.
        self.reset()

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30
        ).close()

    def env(self) -> dict[str, str]:
        """What the AWS CLI, terraform's AWS provider and the SDKs read to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self.server.stop()


class Root:
    """One Terraform root copied to `workdir`, with a local backend, talking to moto."""

    def __init__(
        self,
        source: pathlib.Path,
        workdir: pathlib.Path,
        moto: Moto,
        files: list[str] | None = None,
        extra: str = "",
    ) -> None:
        """`files` picks some of the root's *.tf files (all by default); `extra` is more HCL
        written next to them, such as the stand-ins for what the picked files refer to."""
        self.dir = workdir / source.name
        self.dir.mkdir(parents=True)
        for path in source.glob("*.tf"):
            if files is None or path.name in files:
                shutil.copy(path, self.dir)
        # Data files the configuration reads with file() (the EKS calendar).
        for path in source.glob("*.json"):
            shutil.copy(path, self.dir)
        if extra:
            (self.dir / "rehearsal.tf").write_text(extra)
        for sub in ("policies",):
            if (source / sub).is_dir():
                shutil.copytree(source / sub, self.dir / sub)
        if files is None:
            shutil.copy(source / ".terraform.lock.hcl", self.dir)
        # Replaces the partial S3 backend: the state stays in the temporary directory.
        (self.dir / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
        rc = workdir / "terraformrc"
        rc.write_text(
            'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % MIRROR
        )
        self.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(rc),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            **moto.env(),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.env.pop("AWS_PROFILE", None)
        self.env.pop("TF_DATA_DIR", None)

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["terraform", *args, "-no-color"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode not in ok:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def init(self) -> None:
        readonly = ("-lockfile=readonly",) if (self.dir / ".terraform.lock.hcl").exists() else ()
        self.run("init", *readonly)

    def apply(self, *flags: str) -> None:
        self.run("apply", "-auto-approve", "-parallelism=20", *flags)

    def plan_changes(self, *flags: str) -> str:
        """The plan's text when it has changes, "" when it has none (-detailed-exitcode)."""
        result = self.run("plan", "-detailed-exitcode", "-parallelism=20", *flags, ok=(0, 2))
        if result.returncode == 0:
            return ""
        # The refresh lines say nothing; keep the diff.
        text = result.stdout
        start = text.find("Terraform used the selected providers")
        return text[start:] if start >= 0 else text

    def planned_changes(self, *flags: str) -> dict[str, set[str]]:
        """Resource address -> top-level attributes a plan would change (empty: no changes)."""
        self.run("plan", "-out=rehearsal.tfplan", "-parallelism=20", *flags)
        plan = json.loads(self.run("show", "-json", "rehearsal.tfplan").stdout)
        changes: dict[str, set[str]] = {}
        for change in plan.get("resource_changes", []):
            actions = change["change"]["actions"]
            if actions in (["no-op"], ["read"]):
                continue
            before = change["change"].get("before") or {}
            after = change["change"].get("after") or {}
            unknown = change["change"].get("after_unknown") or {}
            changes[change["address"]] = {
                key
                for key in set(before) | set(after)
                if before.get(key) != after.get(key) or unknown.get(key) is True
            } or {"(" + "/".join(actions) + ")"}
        return changes

    def destroy(self, *flags: str) -> None:
        self.run("destroy", "-auto-approve", "-parallelism=20", *flags)

    def state(self) -> list[str]:
        """Managed resources in the state (data sources are read again on every run)."""
        result = self.run("state", "list", ok=(0, 1))
        return [
            line
            for line in result.stdout.splitlines()
            if line.strip() and not line.startswith("data.")
        ]

    def state_text(self) -> str:
        return (self.dir / "terraform.tfstate").read_text()

    def outputs(self) -> dict[str, Any]:
        raw = json.loads(self.run("output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}
