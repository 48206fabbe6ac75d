terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }

  # Partial configuration: bucket, key, region and use_lockfile come from
  # `terraform init -backend-config=backend.hcl` (see backend.hcl.example).
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project   = var.name
      ManagedBy = "terraform"
      Stack     = "infra/aws"
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # The first statement of every customer-managed key's policy: the account administers the
  # key, so the IAM policies of the roles that use it take effect.
  kms_account_administration = {
    Sid       = "AccountAdministration"
    Effect    = "Allow"
    Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
    Action    = "kms:*"
    Resource  = "*"
  }

  # The two long-lived environments and the namespace each one runs in (CONTRACT.md).
  environments = {
    staging    = { namespace = "staging" }
    production = { namespace = "production" }
  }

  # Name of the ServiceAccount the chart creates in every namespace (CONTRACT.md).
  app_service_account = "order-service"

  hostnames = {
    production = var.production_subdomain == "@" ? var.domain_name : "${var.production_subdomain}.${var.domain_name}"
    staging    = "${var.staging_subdomain}.${var.domain_name}"
  }
}
