variable "pr_number" {
  description = "Number of the pull request this preview belongs to."
  type        = number

  validation {
    condition     = var.pr_number >= 1 && var.pr_number <= 9999999 && floor(var.pr_number) == var.pr_number
    error_message = "pr_number must be a positive whole number."
  }
}

variable "name" {
  description = "Name prefix; must match infra/aws's name (the permissions boundary and secret prefix depend on it)."
  type        = string
  default     = "order-service"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region of the preview."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region, for example eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "lambda_zip" {
  description = "Zip built by `cargo lambda build --release --arm64 --output-format zip`, relative to this directory."
  type        = string
  default     = "../../target/lambda/order-service-lambda/bootstrap.zip"

  validation {
    condition     = endswith(var.lambda_zip, ".zip")
    error_message = "lambda_zip must point to a .zip file."
  }
}

variable "store" {
  description = "Order store of the preview: postgres (default: the schema preview_pr_<n> of the shared database, as the preview database role; needs secret_name, subnet_ids and security_group_ids, which infra/aws's preview_tfvars output gives) or memory (opt-in, seeded with sample data, one sandbox)."
  type        = string
  default     = "postgres"

  validation {
    condition     = contains(["memory", "postgres"], var.store)
    error_message = "store must be memory or postgres."
  }
}

variable "secret_name" {
  description = "Optional Secrets Manager secret (api_keys, database_url) the preview reads; null runs without one. Must live under <name>/preview/ and use the AWS-managed key."
  type        = string
  default     = null

  validation {
    condition     = var.secret_name == null || startswith(coalesce(var.secret_name, "-"), "${var.name}/preview/")
    error_message = "secret_name must start with <name>/preview/: the preview roles may read nothing else."
  }

  validation {
    condition     = var.store == "memory" || var.secret_name != null
    error_message = "store = postgres needs secret_name: the database URL comes from the secret."
  }
}

variable "subnet_ids" {
  description = "Private subnets to attach the function to (needed to reach the database with store = postgres); empty keeps it outside the VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the function when subnet_ids is set."
  type        = list(string)
  default     = []

  validation {
    condition     = (length(var.subnet_ids) == 0) == (length(var.security_group_ids) == 0)
    error_message = "subnet_ids and security_group_ids must be set together."
  }
}

variable "db_max_connections" {
  description = "DB_MAX_CONNECTIONS of a postgres preview: connections one sandbox opens at most. With the preview role's CONNECTION LIMIT (sql/preview-role.sql in infra/aws, 20 as documented) it bounds how many sandboxes of all previews together reach the database (20 / 2 = 10)."
  type        = number
  default     = 2

  validation {
    condition     = var.db_max_connections >= 1 && var.db_max_connections <= 10 && floor(var.db_max_connections) == var.db_max_connections
    error_message = "db_max_connections must be a whole number from 1 to 10."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of the preview."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["trace", "debug", "info", "warn", "error"], lower(var.log_level))
    error_message = "log_level must be trace, debug, info, warn or error."
  }
}

variable "log_retention_days" {
  description = "Retention of the preview's log group; previews live as long as their pull request."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30], var.log_retention_days)
    error_message = "log_retention_days must be 1, 3, 5, 7, 14 or 30."
  }
}

variable "memory_size_mb" {
  description = "Memory of the function, in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size_mb >= 128 && var.memory_size_mb <= 2048
    error_message = "memory_size_mb must be between 128 and 2048."
  }
}

variable "timeout_seconds" {
  description = "Function timeout; above the app's REQUEST_TIMEOUT_MS so the app answers first."
  type        = number
  default     = 15

  validation {
    condition     = var.timeout_seconds >= 11 && var.timeout_seconds <= 60
    error_message = "timeout_seconds must be between 11 and 60."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of a postgres preview; null (the default) reserves nothing, so a browser's parallel requests are never throttled and a new account's quota of 10 is enough. The database is protected by the preview role's CONNECTION LIMIT and db_max_connections, not by this. A memory preview always runs with 1 (see locals in versions.tf)."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrency == null || (coalesce(var.reserved_concurrency, 1) >= 1 && coalesce(var.reserved_concurrency, 1) <= 50)
    error_message = "reserved_concurrency must be between 1 and 50."
  }

  # Every sandbox of a memory preview has its own store: with two or more, a GET
  # after a POST can 404, ids repeat and idempotency holds per sandbox.
  validation {
    condition     = var.store == "postgres" || var.reserved_concurrency == null || var.reserved_concurrency == 1
    error_message = "reserved_concurrency above 1 needs store = postgres: each Lambda sandbox of a memory preview has its own store."
  }
}
