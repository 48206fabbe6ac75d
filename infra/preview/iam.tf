data "aws_secretsmanager_secret" "preview" {
  count = var.secret_name == null ? 0 : 1

  name = var.secret_name
}

locals {
  ec2_arn_prefix      = "arn:${data.aws_partition.current.partition}:ec2:${var.region}:${data.aws_caller_identity.current.account_id}"
  subnet_arns         = [for id in var.subnet_ids : "${local.ec2_arn_prefix}:subnet/${id}"]
  security_group_arns = [for id in var.security_group_ids : "${local.ec2_arn_prefix}:security-group/${id}"]
}

resource "aws_iam_role" "function" {
  name                 = local.function_name
  description          = "Execution role of the preview of pull request ${var.pr_number}"
  permissions_boundary = local.permissions_boundary_arn

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = ["sts:AssumeRole"]
      Condition = {
        StringEquals = { "aws:SourceAccount" = data.aws_caller_identity.current.account_id }
      }
    }]
  })
}

# Own log group, traces, and when configured the one preview secret and the VPC
# network interfaces. Nothing else.
resource "aws_iam_role_policy" "function" {
  name = "preview"
  role = aws_iam_role.function.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "OwnLogGroup"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.function.arn}:*"
        },
        {
          # X-Ray does not support resource-level permissions.
          Sid      = "Tracing"
          Effect   = "Allow"
          Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
          Resource = "*"
        },
      ],
      [for s in data.aws_secretsmanager_secret.preview : {
        Sid      = "PreviewSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = s.arn
      }],
      [for s in [
        {
          # Lambda creates the function's interfaces with this role: only in the
          # given subnets and with the given security groups, never another one.
          Sid      = "VpcNetworkInterfaces"
          Effect   = "Allow"
          Action   = ["ec2:CreateNetworkInterface"]
          Resource = concat(local.subnet_arns, local.security_group_arns, ["${local.ec2_arn_prefix}:network-interface/*"])
        },
        {
          Sid    = "VpcNetworkInterfaceLifecycle"
          Effect = "Allow"
          Action = [
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
          ]
          Resource  = "${local.ec2_arn_prefix}:network-interface/*"
          Condition = { ArnEquals = { "ec2:Subnet" = local.subnet_arns } }
        },
        {
          Sid      = "VpcDescribe"
          Effect   = "Allow"
          Action   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
          Resource = "*"
        },
      ] : s if length(var.subnet_ids) > 0],
    )
  })
}
