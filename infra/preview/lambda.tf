resource "aws_cloudwatch_log_group" "function" {
  # checkov:skip=CKV_AWS_158: preview logs hold no secrets (the app never logs secret values) and live 14 days; a customer-managed key per pull request would outlive the preview it protects.
  # checkov:skip=CKV_AWS_338: a preview lives as long as its pull request; a year of retention would keep logs of code that was never merged.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
}

locals {
  # The serving function's environment (the migrate function's too).
  function_environment = merge(
    {
      ENVIRONMENT = local.environment
      LOG_LEVEL   = var.log_level
      # Reads open on purpose: a preview's schema holds only the orders its reviewers create
      # (or the sample data), never a customer's, and reviewers open the URL in a browser.
      # Writes still need a key from the preview secret.
      PUBLIC_READS     = "true"
      SEED_SAMPLE_DATA = var.store == "memory" ? "true" : "false"
      STORE            = var.store
    },
    var.store == "postgres" ? {
      DB_SCHEMA          = "preview_pr_${var.pr_number}"
      DB_MAX_CONNECTIONS = tostring(var.db_max_connections)
    } : {},
    var.secret_name == null ? { SECRETS_MANAGER_ENABLED = "false" } : {
      SECRETS_MANAGER_ENABLED                           = "true"
      AWS_SECRET_NAME                                   = var.secret_name
    },
  )
}

check "lambda_zip_exists" {
  assert {
    condition     = fileexists(var.lambda_zip)
    error_message = "${var.lambda_zip} does not exist: run `cargo lambda build --release --arm64 --output-format zip -p order-service-lambda` or pass -var lambda_zip=..."
  }
}

# The serving function and, for a postgres preview, its migrate function: the same zip, role,
# environment, log group and network; each its own handler, timeout and reservation.
#
# The migrate function runs the zip with the handler `migrate`, in the same subnets and
# security group as the serving function, so it reaches the database in the private subnets,
# which the deploy's runner cannot. preview-deploy.sh creates it first, invokes it, and updates
# the serving function only when the migration succeeded; a cold start of the serving function
# does no DDL. Only a postgres preview has a schema to migrate.
locals {
  functions = merge(
    {
      serve = {
        name                 = local.function_name
        description          = "Order service preview of pull request ${var.pr_number}"
        handler              = "bootstrap"
        timeout              = var.timeout_seconds
        reserved_concurrency = local.reserved_concurrency
      }
    },
    var.store == "postgres" ? {
      migrate = {
        name        = "${local.function_name}-migrate"
        description = "Migrates the schema of the preview of pull request ${var.pr_number}"
        handler     = "migrate"
        # Migrations may build indexes; the deploy waits this long at most (preview-deploy.sh).
        timeout = 300
        # The deploy invokes it once per push and waits for it: a reservation would take from
        # the account's unreserved pool for a function that runs seconds per deploy.
        reserved_concurrency = null
      }
    } : {},
  )
}

resource "aws_lambda_function" "preview" {
  # checkov:skip=CKV_AWS_116: both are invoked synchronously (the URL, the deploy, which fails on the migration's error); a dead-letter queue only receives failed asynchronous events.
  # checkov:skip=CKV_AWS_117: the memory store needs no network access; the functions join the VPC only when subnet_ids is set (store = postgres), both the same way, to reach the same database.
  # checkov:skip=CKV_AWS_173: the environment holds no secrets (only names and switches); secrets come from Secrets Manager at run time.
  # checkov:skip=CKV_AWS_272: the zip is built and deployed by the same CI job from the pull request's commit; code signing would add a signer profile per preview without a separate trust boundary.
  for_each = local.functions

  function_name = each.value.name
  description   = each.value.description
  role          = aws_iam_role.function.arn

  filename = var.lambda_zip
  # Destroy runs without the zip (preview-destroy.sh); the hash matters only when
  # the file is there to upload.
  source_code_hash = fileexists(var.lambda_zip) ? filebase64sha256(var.lambda_zip) : null
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  handler          = each.value.handler
  memory_size      = var.memory_size_mb
  timeout          = each.value.timeout

  reserved_concurrent_executions = each.value.reserved_concurrency

  # The migrate function runs with the serving function's environment, so it migrates
  # exactly the schema the serving function will use, with the same secret.
  environment {
    variables = local.function_environment
  }

  tracing_config {
    mode = "Active"
  }

  # The one setting of the log format: Lambda passes it to the process as
  # AWS_LAMBDA_LOG_FORMAT, which the binary follows, and CloudWatch indexes JSON lines. The
  # preview's one log group: the migration's lines sit beside the requests they precede.
  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function.name
  }

  dynamic "vpc_config" {
    for_each = length(var.subnet_ids) == 0 ? [] : [1]
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  depends_on = [aws_iam_role_policy.function]
}

# Previews deployed before the two functions shared one resource keep their functions.
moved {
  from = aws_lambda_function.preview
  to   = aws_lambda_function.preview["serve"]
}

moved {
  from = aws_lambda_function.migrate[0]
  to   = aws_lambda_function.preview["migrate"]
}

# A public URL: reviewers and the preview smoke test open it without AWS
# credentials. Writes still need an API key from the preview secret, and reserved
# concurrency caps the load anyone can cause.
resource "aws_lambda_function_url" "preview" {
  # checkov:skip=CKV_AWS_258: the preview is a public web endpoint by design; the app itself authenticates writes.
  function_name      = aws_lambda_function.preview["serve"].function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

# The resource policy that lets anonymous callers use the URL. Since October 2025
# a new Function URL answers 403 unless the policy allows both
# lambda:InvokeFunctionUrl and lambda:InvokeFunction.
resource "aws_lambda_permission" "function_url" {
  # checkov:skip=CKV_AWS_301: principal "*" is limited to lambda:InvokeFunctionUrl with auth type NONE, which is what a public preview URL is.
  statement_id           = "PublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.preview["serve"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# The second statement a public Function URL needs. AWS narrows it with the
# condition lambda:InvokedViaFunctionUrl, which hashicorp/aws 5.100.0 cannot
# write (invoked_via_function_url arrived in 6.x); the narrowest it allows is
# this one unqualified function, for the same anonymous callers the URL already
# serves. A direct Invoke reaches the same code as the URL, needs a signed
# request from some AWS account, and is capped by the same reserved concurrency.
resource "aws_lambda_permission" "function_url_invoke" {
  # checkov:skip=CKV_AWS_301: a public Function URL needs lambda:InvokeFunction for principal "*" since October 2025; the provider pinned here cannot add the InvokedViaFunctionUrl condition, and the function serves the same public URL anyway.
  statement_id  = "PublicFunctionUrlInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.preview["serve"].function_name
  principal     = "*"
}
