"""The Grafana admin password of infra/addons, applied for real against moto.

infra/addons' helm and kubernetes providers cannot run here, but its AWS part can:
grafana_admin.tf generates the password with Secrets Manager and writes it write-only.
The test reads the secret back from the API and checks that neither the state nor a plan
ever holds the value.
"""

from __future__ import annotations

import pytest

from conftest import INFRA
from moto_rehearsal import MIRROR, REGION, Moto, Root

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir(), reason=f"no provider mirror at {MIRROR}: hashicorp/aws cannot be installed"
)

SECRET = "order-service/platform/grafana-admin"
CONSUMER = "rehearsal/grafana-kubernetes-secret"

# What infra/aws's state and versions.tf give grafana_admin.tf in infra/addons.
STAND_INS = (
    """
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.100, < 6.0" }
  }
}

provider "aws" {
  region = "%s"
}

variable "grafana_admin_secret_arn" {
  type = string
}

variable "grafana_admin_password_version" {
  type    = number
  default = 1
}

locals {
  platform = { grafana_admin_secret_arn = var.grafana_admin_secret_arn }
}

# Stands in for Grafana's Kubernetes Secret (kubernetes_secret_v1.grafana_admin, data_wo):
# another write-only consumer of the ephemeral read, whose copy the test compares.
variable "consumer_secret_arn" {
  type = string
}

resource "aws_secretsmanager_secret_version" "consumer" {
  secret_id                = var.consumer_secret_arn
  secret_string_wo         = ephemeral.aws_secretsmanager_secret_version.grafana_admin.secret_string
  secret_string_wo_version = var.grafana_admin_password_version
}
"""
    % REGION
)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    moto = Moto()
    arn = moto.client("secretsmanager").create_secret(Name=SECRET)["ARN"]
    consumer = moto.client("secretsmanager").create_secret(Name=CONSUMER)["ARN"]
    root = Root(
        INFRA / "addons",
        tmp_path_factory.mktemp("grafana"),
        moto,
        files=["grafana_admin.tf"],
        extra=STAND_INS,
    )
    root.init()
    variables = (
        "-var",
        f"grafana_admin_secret_arn={arn}",
        "-var",
        f"consumer_secret_arn={consumer}",
    )
    yield root, moto, variables
    moto.stop()


def secret_value(moto, name=SECRET) -> str:
    return moto.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]


def test_password_is_generated_into_secrets_manager_and_kept_out_of_the_state(rehearsal):
    root, moto, variables = rehearsal
    root.apply(*variables)
    password = secret_value(moto)
    assert len(password) == 32 and password.isalnum()
    assert secret_value(moto, CONSUMER) == password, (
        "Grafana must get the value Secrets Manager holds"
    )
    assert password not in root.state_text()
    plan = root.run("plan", "-detailed-exitcode", *variables, ok=(0, 2))
    assert plan.returncode == 0, plan.stdout
    assert password not in plan.stdout


def test_raising_the_version_rotates_the_password(rehearsal):
    root, moto, variables = rehearsal
    root.apply(*variables)
    first = secret_value(moto)
    root.apply(*variables, "-var", "grafana_admin_password_version=2")
    second = secret_value(moto)
    assert second != first and len(second) == 32
    assert secret_value(moto, CONSUMER) == second
    assert first not in root.state_text() and second not in root.state_text()
