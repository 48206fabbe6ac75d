# Roles GitHub Actions assumes with its OIDC token, one per job kind. Each trust
# policy names the exact `sub` claims (repository plus branch, pull request or
# GitHub environment) that may assume it.

resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_oidc_provider_arn == null ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
}

locals {
  github_oidc_provider_arn = coalesce(var.github_oidc_provider_arn, one(aws_iam_openid_connect_provider.github[*].arn))
  github_repo_sub          = "repo:${var.github_repository}"

  github_roles = {
    # terraform plan and reading outputs, on pull requests and on main.
    plan = ["${local.github_repo_sub}:pull_request", "${local.github_repo_sub}:ref:refs/heads/main"]
    # terraform apply runs in a job bound to the production environment, so its
    # required reviewers approve every infrastructure change.
    apply = ["${local.github_repo_sub}:environment:production"]
    # helm upgrade, from jobs bound to the matching GitHub environment; the
    # production environment has required reviewers.
    deploy_staging    = ["${local.github_repo_sub}:environment:staging"]
    deploy_production = ["${local.github_repo_sub}:environment:production"]
    # Per-pull-request Lambda previews.
    preview = ["${local.github_repo_sub}:environment:preview"]
  }

  state_bucket_arn = "arn:${local.partition}:s3:::${var.state_bucket_name}"
  preview_prefix   = "${var.name}-preview-pr-"
}

resource "aws_iam_role" "github" {
  for_each = local.github_roles

  name                 = "${var.name}-github-${replace(each.key, "_", "-")}"
  description          = "GitHub Actions (${var.github_repository}): ${each.key}"
  max_session_duration = 3600

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = local.github_oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = each.value
        }
      }
    }]
  })
}

# --- plan: read everything, write only the state lock -----------------------------

resource "aws_iam_role_policy_attachment" "github_plan_read_only" {
  role       = aws_iam_role.github["plan"].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

resource "aws_iam_role_policy" "github_plan_state" {
  name = "terraform-state-lock"
  role = aws_iam_role.github["plan"].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # S3-native locking writes and removes a .tflock object next to the state.
      Sid      = "StateLock"
      Effect   = "Allow"
      Action   = ["s3:PutObject", "s3:DeleteObject"]
      Resource = "${local.state_bucket_arn}/*.tflock"
    }]
  })
}

# --- apply: manages the whole platform (VPC, EKS, IAM, KMS, RDS) ------------------

resource "aws_iam_role_policy_attachment" "github_apply_admin" {
  # checkov:skip=CKV_AWS_274: terraform apply creates IAM roles, KMS keys, VPC and EKS resources; no narrower managed policy covers that. Only jobs of one repository in its production environment, after review, can assume the role.
  role       = aws_iam_role.github["apply"].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AdministratorAccess"
}

# --- deploy: find the cluster ---------------------------------------------------------
# What they may do inside the cluster is set by their EKS access entries (eks.tf):
# admin of their own namespace only. The workflow reads the outputs with the plan role.

resource "aws_iam_role_policy" "github_deploy" {
  for_each = toset(["deploy_staging", "deploy_production"])

  name = "deploy"
  role = aws_iam_role.github[each.key].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "DescribeCluster"
      Effect   = "Allow"
      Action   = ["eks:DescribeCluster"]
      Resource = aws_eks_cluster.this.arn
    }]
  })
}

# --- preview: one Lambda per pull request (infra/preview) ----------------------------

# Ceiling for the execution roles the preview job creates: whatever inline policy
# it writes, a preview function can do no more than this.
resource "aws_iam_policy" "preview_boundary" {
  name        = "${var.name}-preview-boundary"
  description = "Permissions boundary of the preview Lambda execution roles"

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "OwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${local.preview_prefix}*"
      },
      {
        Sid      = "PreviewSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = "arn:${local.partition}:secretsmanager:${var.region}:${local.account_id}:secret:${var.name}/preview/*"
      },
      {
        # Network interfaces of a function attached to the VPC (STORE=postgres).
        Sid    = "VpcNetworkInterfaces"
        Effect = "Allow"
        Action = [
          "ec2:CreateNetworkInterface",
          "ec2:DeleteNetworkInterface",
          "ec2:AssignPrivateIpAddresses",
          "ec2:UnassignPrivateIpAddresses",
        ]
        Resource = "arn:${local.partition}:ec2:${var.region}:${local.account_id}:*"
      },
      {
        # These actions do not support resource-level permissions.
        Sid    = "TracingAndDescribe"
        Effect = "Allow"
        Action = [
          "xray:PutTraceSegments",
          "xray:PutTelemetryRecords",
          "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeSubnets",
        ]
        Resource = "*"
      },
    ]
  })
}

resource "aws_iam_role_policy" "github_preview" {
  name = "manage-previews"
  role = aws_iam_role.github["preview"].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "PreviewFunctions"
        Effect = "Allow"
        Action = [
          "lambda:CreateFunction",
          "lambda:DeleteFunction",
          "lambda:GetFunction",
          "lambda:GetFunctionConfiguration",
          "lambda:GetFunctionCodeSigningConfig",
          "lambda:UpdateFunctionCode",
          "lambda:UpdateFunctionConfiguration",
          "lambda:ListVersionsByFunction",
          "lambda:PutFunctionConcurrency",
          "lambda:DeleteFunctionConcurrency",
          "lambda:GetFunctionConcurrency",
          "lambda:CreateFunctionUrlConfig",
          "lambda:UpdateFunctionUrlConfig",
          "lambda:DeleteFunctionUrlConfig",
          "lambda:GetFunctionUrlConfig",
          "lambda:AddPermission",
          "lambda:RemovePermission",
          "lambda:GetPolicy",
          "lambda:TagResource",
          "lambda:UntagResource",
          "lambda:ListTags",
        ]
        Resource = "arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${local.preview_prefix}*"
      },
      {
        # Execution roles may only be created or changed with the boundary attached.
        Sid    = "PreviewRolesWithBoundary"
        Effect = "Allow"
        Action = [
          "iam:CreateRole",
          "iam:PutRolePolicy",
          "iam:DeleteRolePolicy",
        ]
        Resource = "arn:${local.partition}:iam::${local.account_id}:role/${local.preview_prefix}*"
        Condition = {
          StringEquals = { "iam:PermissionsBoundary" = aws_iam_policy.preview_boundary.arn }
        }
      },
      {
        Sid    = "PreviewRoles"
        Effect = "Allow"
        Action = [
          "iam:GetRole",
          "iam:GetRolePolicy",
          "iam:ListRolePolicies",
          "iam:ListAttachedRolePolicies",
          "iam:ListInstanceProfilesForRole",
          "iam:DeleteRole",
          "iam:TagRole",
          "iam:UntagRole",
        ]
        Resource = "arn:${local.partition}:iam::${local.account_id}:role/${local.preview_prefix}*"
      },
      {
        Sid      = "PassPreviewRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = "arn:${local.partition}:iam::${local.account_id}:role/${local.preview_prefix}*"
        Condition = {
          StringEquals = { "iam:PassedToService" = "lambda.amazonaws.com" }
        }
      },
      {
        Sid    = "PreviewLogGroups"
        Effect = "Allow"
        Action = [
          "logs:CreateLogGroup",
          "logs:DeleteLogGroup",
          "logs:PutRetentionPolicy",
          "logs:DeleteRetentionPolicy",
          "logs:TagResource",
          "logs:UntagResource",
          "logs:ListTagsForResource",
        ]
        Resource = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${local.preview_prefix}*"
      },
      {
        # Describe calls Terraform makes while refreshing; none can be scoped.
        Sid    = "Describe"
        Effect = "Allow"
        Action = [
          "logs:DescribeLogGroups",
          "ec2:DescribeSecurityGroups",
          "ec2:DescribeSubnets",
          "ec2:DescribeVpcs",
        ]
        Resource = "*"
      },
      {
        Sid      = "PreviewSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret"]
        Resource = "arn:${local.partition}:secretsmanager:${var.region}:${local.account_id}:secret:${var.name}/preview/*"
      },
      {
        Sid      = "PreviewStateList"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = local.state_bucket_arn
        Condition = {
          StringLike = { "s3:prefix" = ["preview/*"] }
        }
      },
      {
        Sid      = "PreviewState"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        Resource = "${local.state_bucket_arn}/preview/*"
      },
    ]
  })
}
