# Where a preview Lambda may join the VPC (store = postgres): the private
# subnets, with this security group only. The preview permissions boundary
# (github_oidc.tf) allows network interfaces nowhere else, so a preview can never
# be attached to the nodes' security group.
resource "aws_security_group" "preview" {
  # checkov:skip=CKV2_AWS_5: attached by the preview Lambda functions of infra/preview (another root, one state per pull request), which checkov cannot see from here.
  name        = "${var.name}-preview"
  description = "Preview Lambda functions: out to PostgreSQL in the VPC and HTTPS (Secrets Manager through NAT)"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-preview" }
}

resource "aws_vpc_security_group_egress_rule" "preview_https" {
  # checkov:skip=CKV_AWS_382: Secrets Manager is reached through the NAT gateways at addresses AWS does not publish per account; the egress is HTTPS only.
  security_group_id = aws_security_group.preview.id
  description       = "HTTPS to Secrets Manager through NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "preview_postgres" {
  security_group_id = aws_security_group.preview.id
  description       = "PostgreSQL inside the VPC"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_vpc_security_group_ingress_rule" "database_from_previews" {
  count = local.database_count

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from preview functions (each in its own schema)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.preview.id
}

# --- the previews' database ----------------------------------------------------------------

# The connection of the preview database role (sql/preview-role.sql): operators put
# {"database_url": "postgres://order_service_preview:…@<endpoint>/<db>"} into it after
# running that file. Under <name>/preview/ with the AWS-managed key, the only secrets the
# preview boundary lets a function read.
resource "aws_secretsmanager_secret" "preview_database" {
  count = local.database_count

  # checkov:skip=CKV_AWS_149: the preview execution roles, bounded by the preview boundary, read it without a key grant; a customer-managed key would need a grant per pull request's role.
  # checkov:skip=CKV2_AWS_57: the value is the preview role's URL, set by operators with sql/preview-role.sql; rotating it needs a rotation function that runs that file.
  name                    = "${var.name}/preview/database"
  description             = "Connection of the pull-request previews' database role (database_url, JSON)."
  recovery_window_in_days = var.secret_recovery_window_days
}

locals {
  # What every preview gets as infra/preview variables (repository variable
  # TFVARS_INFRA_PREVIEW): PostgreSQL in the private subnets when the database exists,
  # the memory store otherwise.
  preview_tfvars = var.create_database ? join("\n", [
    "store              = \"postgres\"",
    "secret_name        = \"${aws_secretsmanager_secret.preview_database[0].name}\"",
    "subnet_ids         = ${jsonencode([for s in aws_subnet.private : s.id])}",
    "security_group_ids = ${jsonencode([aws_security_group.preview.id])}",
  ]) : "store = \"memory\""
}
