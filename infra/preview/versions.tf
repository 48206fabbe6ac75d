terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
  }

  # One state per pull request: pass key=preview/pr-<n>.tfstate with -backend-config
  # (see backend.hcl.example), so destroying one preview never touches another.
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project     = var.name
      ManagedBy   = "terraform"
      Stack       = "infra/preview"
      PullRequest = tostring(var.pr_number)
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  environment   = "preview-pr-${var.pr_number}"
  function_name = "${var.name}-${local.environment}"

  # One sandbox, so one memory store: every request of a memory preview sees the
  # same orders. A postgres preview shares state through its own schema and runs as
  # many sandboxes as requests arrive (null: no reservation), capped at the database by
  # the preview role's connection limit.
  reserved_concurrency = var.store == "memory" ? 1 : var.reserved_concurrency

  # infra/aws creates this boundary and lets the preview CI role create execution
  # roles only when it is attached (github_oidc.tf there).
  permissions_boundary_arn = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:policy/${var.name}-preview-boundary"
}
