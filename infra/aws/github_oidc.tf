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
    # terraform plan of infra/aws and reading its outputs, in deliver.yml on main only:
    # no pull request job plans, so no pull request branch may take this role.
    plan = ["${local.github_repo_sub}:ref:refs/heads/main"]
    # terraform apply (and the plan of infra/addons, which reads Helm release
    # Secrets) runs only in jobs bound to the `infrastructure` environment. No
    # other job, a production deploy included, can take this administrator role.
    apply = ["${local.github_repo_sub}:environment:infrastructure"]
    # helm upgrade, from jobs bound to the matching GitHub environment; the
    # production environment has required reviewers.
    deploy_staging    = ["${local.github_repo_sub}:environment:staging"]
    deploy_production = ["${local.github_repo_sub}:environment:production"]
    # Per-pull-request Lambda previews.
    preview = ["${local.github_repo_sub}:environment:preview"]
    # Pushing the image built from main to ECR.
    publish = ["${local.github_repo_sub}:ref:refs/heads/main"]
  }

  state_bucket_arn = "arn:${local.partition}:s3:::${var.state_bucket_name}"
  preview_prefix   = "${var.name}-preview-pr-"

  preview_subnet_arns = [for s in aws_subnet.private : s.arn]
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

# --- plan: exactly what `terraform plan` of infra/aws reads ---------------------
# No ReadOnlyAccess: it would read every S3 object, SSM parameter and log of the
# account. Plan reads the state of the infra roots, takes the lock, and describes
# the resources infra/aws manages; it reads no secret value and has no access to
# the cluster (eks.tf).

locals {
  arn_prefix = {
    for service in ["ec2", "kms", "secretsmanager", "logs", "rds", "ecr", "acm", "eks"] :
    service => "arn:${local.partition}:${service}:${var.region}:${local.account_id}"
  }
}

resource "aws_iam_role_policy" "github_plan" {
  name = "terraform-plan"
  role = aws_iam_role.github["plan"].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # infra/aws and infra/addons states; the preview states are the preview role's.
        Sid      = "ReadInfraState"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = "${local.state_bucket_arn}/infra/*"
      },
      {
        Sid      = "ListInfraState"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = local.state_bucket_arn
        Condition = {
          StringLike = { "s3:prefix" = ["infra/*"] }
        }
      },
      {
        # S3-native locking writes and removes a .tflock object next to the state.
        Sid      = "StateLock"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:DeleteObject"]
        Resource = "${local.state_bucket_arn}/infra/*.tflock"
      },
      {
        # Describe and List calls that IAM cannot scope to a resource.
        Sid    = "DescribeUnscoped"
        Effect = "Allow"
        Action = [
          "ec2:DescribeAddresses",
          "ec2:DescribeAddressesAttribute",
          "ec2:DescribeAvailabilityZones",
          "ec2:DescribeFlowLogs",
          "ec2:DescribeInternetGateways",
          "ec2:DescribeLaunchTemplates",
          "ec2:DescribeLaunchTemplateVersions",
          "ec2:DescribeNatGateways",
          "ec2:DescribeNetworkAcls",
          "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeRouteTables",
          "ec2:DescribeSecurityGroupRules",
          "ec2:DescribeSecurityGroups",
          "ec2:DescribeSubnets",
          "ec2:DescribeTags",
          "ec2:DescribeVpcAttribute",
          "ec2:DescribeVpcs",
          "kms:ListAliases",
          "logs:DescribeLogGroups",
          "rds:DescribeDBEngineVersions",
        ]
        Resource = "*"
      },
      {
        Sid    = "ReadIam"
        Effect = "Allow"
        Action = [
          "iam:GetRole",
          "iam:GetRolePolicy",
          "iam:ListRolePolicies",
          "iam:ListAttachedRolePolicies",
          "iam:GetPolicy",
          "iam:GetPolicyVersion",
          "iam:ListPolicyVersions",
          "iam:GetOpenIDConnectProvider",
        ]
        Resource = [
          "arn:${local.partition}:iam::${local.account_id}:role/${var.name}-*",
          "arn:${local.partition}:iam::${local.account_id}:policy/${var.name}-*",
          "arn:${local.partition}:iam::${local.account_id}:oidc-provider/*",
        ]
      },
      {
        Sid      = "ReadKeys"
        Effect   = "Allow"
        Action   = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
        Resource = "${local.arn_prefix.kms}:key/*"
      },
      {
        # Metadata only: GetSecretValue is deliberately absent.
        Sid      = "DescribeSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy"]
        Resource = "${local.arn_prefix.secretsmanager}:secret:${var.name}/*"
      },
      {
        Sid    = "DescribeCluster"
        Effect = "Allow"
        Action = [
          "eks:DescribeCluster",
          "eks:DescribeNodegroup",
          "eks:DescribeAddon",
          "eks:DescribeAccessEntry",
          "eks:ListAssociatedAccessPolicies",
          "eks:ListTagsForResource",
        ]
        Resource = [
          "${local.arn_prefix.eks}:cluster/${var.name}",
          "${local.arn_prefix.eks}:nodegroup/${var.name}/*",
          "${local.arn_prefix.eks}:addon/${var.name}/*",
          "${local.arn_prefix.eks}:access-entry/${var.name}/*",
        ]
      },
      {
        Sid      = "DescribeCertificates"
        Effect   = "Allow"
        Action   = ["acm:DescribeCertificate", "acm:ListTagsForCertificate"]
        Resource = "${local.arn_prefix.acm}:certificate/*"
      },
      {
        Sid      = "ReadZone"
        Effect   = "Allow"
        Action   = ["route53:GetHostedZone", "route53:ListResourceRecordSets", "route53:ListTagsForResource"]
        Resource = "arn:${local.partition}:route53:::hostedzone/${var.hosted_zone_id}"
      },
      {
        Sid      = "ReadLogGroupTags"
        Effect   = "Allow"
        Action   = ["logs:ListTagsForResource", "logs:ListTagsLogGroup"]
        Resource = ["${local.arn_prefix.logs}:log-group:/aws/vpc/${var.name}/*", "${local.arn_prefix.logs}:log-group:/aws/eks/${var.name}/*"]
      },
      {
        Sid    = "DescribeDatabase"
        Effect = "Allow"
        Action = [
          "rds:DescribeDBInstances",
          "rds:DescribeDBSubnetGroups",
          "rds:DescribeDBParameterGroups",
          "rds:DescribeDBParameters",
          "rds:ListTagsForResource",
        ]
        Resource = [
          "${local.arn_prefix.rds}:db:${var.name}",
          "${local.arn_prefix.rds}:subgrp:${var.name}",
          "${local.arn_prefix.rds}:pg:${var.name}-*",
        ]
      },
      {
        Sid      = "DescribeRegistry"
        Effect   = "Allow"
        Action   = ["ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy", "ecr:ListTagsForResource"]
        Resource = aws_ecr_repository.app.arn
      },
    ]
  })
}

# --- apply: manages the whole platform (VPC, EKS, IAM, KMS, RDS) ------------------

resource "aws_iam_role_policy_attachment" "github_apply_admin" {
  # checkov:skip=CKV_AWS_274: terraform apply creates IAM roles, KMS keys, VPC and EKS resources; no narrower managed policy covers that. Only jobs of one repository bound to its reviewed infrastructure environment can assume the role.
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
    Statement = [
      {
        Sid      = "DescribeCluster"
        Effect   = "Allow"
        Action   = ["eks:DescribeCluster"]
        Resource = aws_eks_cluster.this.arn
      },
      {
        # The deploy preflight (.github/scripts/check-secret-shape.py) checks the key
        # names of its own environment's runtime secret before the first rollout. No new
        # reach: as admin of the namespace the role can already run pods as the app.
        Sid      = "PreflightReadOwnAppSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = aws_secretsmanager_secret.app[trimprefix(each.key, "deploy_")].arn
      },
      {
        Sid      = "DecryptOwnAppSecret"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = aws_kms_key.app[trimprefix(each.key, "deploy_")].arn
        Condition = {
          StringEquals = { "kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com" }
        }
      },
    ]
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
        # Network interfaces of a function attached to the VPC (store = postgres):
        # only in the private subnets and with the preview security group, so a
        # preview can never join the nodes' or the database's security group.
        Sid      = "PreviewNetworkInterfaces"
        Effect   = "Allow"
        Action   = ["ec2:CreateNetworkInterface"]
        Resource = concat(local.preview_subnet_arns, [aws_security_group.preview.arn, "${local.arn_prefix.ec2}:network-interface/*"])
      },
      {
        Sid    = "PreviewNetworkInterfaceLifecycle"
        Effect = "Allow"
        Action = [
          "ec2:DeleteNetworkInterface",
          "ec2:AssignPrivateIpAddresses",
          "ec2:UnassignPrivateIpAddresses",
        ]
        Resource  = "${local.arn_prefix.ec2}:network-interface/*"
        Condition = { ArnEquals = { "ec2:Subnet" = local.preview_subnet_arns } }
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
          # preview-deploy.sh runs a postgres preview's migrate function before the update.
          "lambda:InvokeFunction",
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
        # Describe calls Terraform makes while refreshing, and the account's Lambda
        # quota the deploy's preflight reads (preview-preflight.py); none can be scoped.
        Sid    = "Describe"
        Effect = "Allow"
        Action = [
          "lambda:GetAccountSettings",
          "logs:DescribeLogGroups",
          "ec2:DescribeSecurityGroups",
          "ec2:DescribeSubnets",
          "ec2:DescribeVpcs",
        ]
        Resource = "*"
      },
      {
        # The data source of infra/preview reads the secret's metadata and its resource
        # policy; the deploy migrates a preview's schema and the teardown drops it with the
        # preview database role's URL from the value. No new reach: the role already deploys
        # code that reads these secrets.
        Sid      = "PreviewSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy", "secretsmanager:GetSecretValue"]
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

# --- publish: push the image built from main to ECR -------------------------------

resource "aws_iam_role_policy" "github_publish" {
  name = "push-image"
  role = aws_iam_role.github["publish"].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # GetAuthorizationToken has no resource-level permissions.
        Sid      = "RegistryLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = "*"
      },
      {
        Sid    = "PushAppImage"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:CompleteLayerUpload",
          "ecr:DescribeImages",
          "ecr:GetDownloadUrlForLayer",
          "ecr:InitiateLayerUpload",
          "ecr:PutImage",
          "ecr:UploadLayerPart",
        ]
        Resource = aws_ecr_repository.app.arn
      },
    ]
  })
}
