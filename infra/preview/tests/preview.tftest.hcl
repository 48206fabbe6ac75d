# Offline checks of infra/preview with a mocked AWS provider. Run with
# -var lambda_zip=<any zip>, since the function hashes the file at plan time
# (.ci/stages/infra.sh builds a tiny one).

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111122223333" }
  }

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }

  mock_data "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:order-service/preview/app-AbCdEf" }
  }

  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111122223333:role/order-service-preview-pr-42" }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/order-service-preview-pr-42" }
  }

  mock_resource "aws_lambda_function_url" {
    defaults = { function_url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/" }
  }
}

variables {
  pr_number = 42
  store     = "memory"
}

run "public_memory_preview" {
  command = plan

  assert {
    condition     = aws_lambda_function_url.preview.authorization_type == "NONE"
    error_message = "The preview URL must be public (auth type NONE): the preview workflow calls it without AWS credentials."
  }

  assert {
    condition     = aws_lambda_permission.function_url.action == "lambda:InvokeFunctionUrl" && aws_lambda_permission.function_url.function_url_auth_type == "NONE"
    error_message = "Anonymous callers may only invoke the function through its URL."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].function_name == "order-service-preview-pr-42" && output.function_name == "order-service-preview-pr-42"
    error_message = "The function is named after the pull request."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].runtime == "provided.al2023" && aws_lambda_function.preview["serve"].architectures == tolist(["arm64"]) && aws_lambda_function.preview["serve"].handler == "bootstrap"
    error_message = "The function must run the cargo-lambda arm64 bootstrap on provided.al2023."
  }

  assert {
    condition = aws_lambda_function.preview["serve"].environment[0].variables == tomap({
      ENVIRONMENT             = "preview-pr-42"
      LOG_LEVEL               = "info"
      PUBLIC_READS            = "true"
      SEED_SAMPLE_DATA        = "true"
      STORE                   = "memory"
      SECRETS_MANAGER_ENABLED = "false"
    })
    error_message = "A memory preview must set exactly the expected environment."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].logging_config[0].log_format == "JSON"
    error_message = "The function's logging configuration is the one source of the log format (AWS_LAMBDA_LOG_FORMAT): JSON lines in CloudWatch."
  }

  assert {
    condition     = aws_lambda_permission.function_url_invoke.action == "lambda:InvokeFunction" && aws_lambda_permission.function_url_invoke.principal == "*" && aws_lambda_permission.function_url_invoke.qualifier == null
    error_message = "Since October 2025 a public Function URL also needs lambda:InvokeFunction for principal * on the function itself, or it answers 403."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].tracing_config[0].mode == "Active"
    error_message = "The preview must be traced."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].reserved_concurrent_executions == 1
    error_message = "A memory preview must run one sandbox: each sandbox has its own store."
  }

  assert {
    condition     = aws_cloudwatch_log_group.function.name == "/aws/lambda/order-service-preview-pr-42" && aws_cloudwatch_log_group.function.retention_in_days > 0
    error_message = "The preview needs its own log group with a retention."
  }

  assert {
    condition     = aws_iam_role.function.permissions_boundary == "arn:aws:iam::111122223333:policy/order-service-preview-boundary"
    error_message = "The execution role must carry the boundary the preview CI role requires."
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.preview), "migrate") && output.migrate_function_name == null
    error_message = "A memory preview has no schema, so no migrate function."
  }

  assert {
    condition     = length(aws_lambda_function.preview["serve"].vpc_config) == 0
    error_message = "A memory preview stays outside the VPC."
  }
}

run "execution_role_without_secret" {
  command = apply

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_role_policy.function.policy).Statement : s.Action])) == toset(["logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"])
    error_message = "Without a secret the role may only write its logs and traces."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.function.policy).Statement :
      s.Resource == "${aws_cloudwatch_log_group.function.arn}:*" if contains(s.Action, "logs:PutLogEvents")
    ])
    error_message = "Log writes must be limited to the preview's own log group."
  }

  assert {
    condition     = output.function_url == "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"
    error_message = "function_url must be the Function URL."
  }
}

run "postgres_preview_with_secret" {
  command = apply

  variables {
    store              = "postgres"
    secret_name        = "order-service/preview/app"
    subnet_ids         = ["subnet-0123456789abcdef0"]
    security_group_ids = ["sg-0123456789abcdef0"]
  }

  assert {
    condition = (
      aws_lambda_function.preview["serve"].environment[0].variables["STORE"] == "postgres" &&
      aws_lambda_function.preview["serve"].environment[0].variables["PUBLIC_READS"] == "true" &&
      aws_lambda_function.preview["serve"].environment[0].variables["DB_SCHEMA"] == "preview_pr_42" &&
      aws_lambda_function.preview["serve"].environment[0].variables["SECRETS_MANAGER_ENABLED"] == "true" &&
      aws_lambda_function.preview["serve"].environment[0].variables["AWS_SECRET_NAME"] == "order-service/preview/app"
    )
    error_message = "A postgres preview must use its own schema and read the preview secret."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.function.policy).Statement : s
      if length(setintersection(toset(s.Action), ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "secretsmanager:ListSecrets"])) > 0
      ] == [{
        Sid      = "PreviewSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = data.aws_secretsmanager_secret.preview[0].arn
    }]
    error_message = "The role may read only the preview secret, with GetSecretValue only."
  }

  assert {
    condition     = length(aws_lambda_function.preview["serve"].vpc_config) == 1
    error_message = "A postgres preview must join the VPC to reach the database."
  }

  assert {
    condition = (
      aws_lambda_function.preview["migrate"].handler == "migrate" &&
      aws_lambda_function.preview["migrate"].filename == aws_lambda_function.preview["serve"].filename &&
      aws_lambda_function.preview["migrate"].environment[0].variables == aws_lambda_function.preview["serve"].environment[0].variables &&
      aws_lambda_function.preview["migrate"].vpc_config[0].subnet_ids == aws_lambda_function.preview["serve"].vpc_config[0].subnet_ids &&
      aws_lambda_function.preview["migrate"].vpc_config[0].security_group_ids == aws_lambda_function.preview["serve"].vpc_config[0].security_group_ids &&
      output.migrate_function_name == "order-service-preview-pr-42-migrate"
    )
    error_message = "A postgres preview's migrate function runs the same zip with the handler migrate, the same environment and the same network as the serving function."
  }

  assert {
    condition     = coalesce(aws_lambda_function.preview["serve"].reserved_concurrent_executions, -1) == -1
    error_message = "A postgres preview reserves nothing: parallel requests are never throttled, and a quota of 10 holds it."
  }

  assert {
    condition     = aws_lambda_function.preview["serve"].environment[0].variables["DB_MAX_CONNECTIONS"] == "2"
    error_message = "A postgres preview sandbox opens at most db_max_connections connections."
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_role_policy.function.policy).Statement : [
        for r in flatten([s.Resource]) : contains([
          "arn:aws:ec2:eu-west-1:111122223333:subnet/subnet-0123456789abcdef0",
          "arn:aws:ec2:eu-west-1:111122223333:security-group/sg-0123456789abcdef0",
          "arn:aws:ec2:eu-west-1:111122223333:network-interface/*",
        ], r)
      ] if contains(s.Action, "ec2:CreateNetworkInterface")
    ]))
    error_message = "Network interfaces may only be created in the preview's own subnets and security groups."
  }
}

run "memory_preview_refuses_more_than_one_sandbox" {
  command = plan

  variables {
    reserved_concurrency = 5
  }

  expect_failures = [var.reserved_concurrency]
}

run "rejects_a_secret_outside_the_preview_prefix" {
  command = plan

  variables {
    secret_name = "order-service/production/app"
  }

  expect_failures = [var.secret_name]
}

run "rejects_a_fractional_pr_number" {
  command = plan

  variables {
    pr_number = 4.5
  }

  expect_failures = [var.pr_number]
}

# preview-destroy.sh runs without the zip: planning must still work, and only
# the check warns.
run "plans_without_the_zip" {
  command = plan

  variables {
    lambda_zip = "/nonexistent/bootstrap.zip"
  }

  expect_failures = [check.lambda_zip_exists]
}
