# Grafana's admin password lives in Secrets Manager only. This root creates the
# empty secret; infra/addons generates the value with an ephemeral
# aws_secretsmanager_random_password, writes it write-only and reads it back
# ephemerally for Grafana, so it never reaches a Terraform state or plan.
resource "aws_kms_key" "grafana" {
  description             = "${var.name}: Grafana admin secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.kms_account_administration]
  })
}

resource "aws_kms_alias" "grafana" {
  name          = "alias/${var.name}-grafana"
  target_key_id = aws_kms_key.grafana.key_id
}

resource "aws_secretsmanager_secret" "grafana_admin" {
  # checkov:skip=CKV2_AWS_57: Grafana keeps the admin password in its own database; a rotation would need a function that also changes it there. Operators rotate by bumping grafana_admin_password_version in infra/addons.
  name                    = "${var.name}/platform/grafana-admin"
  description             = "Grafana admin password (written by infra/addons, never in a Terraform state)."
  kms_key_id              = aws_kms_key.grafana.arn
  recovery_window_in_days = var.secret_recovery_window_days
}
