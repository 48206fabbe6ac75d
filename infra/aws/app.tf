# Per environment: the runtime secret the service reads (AWS_SECRET_NAME) and the
# IRSA role of its ServiceAccount, which may read that secret and nothing else.
#
# Terraform creates the secret container only. Its value (api_keys, each a plain
# read-and-write key or {id, key, scopes}; database credentials) is put by an
# operator with `aws secretsmanager put-secret-value`, so no secret material ever
# lands in the Terraform state.

# One key per environment: kms:Decrypt on it is then worth exactly as much as
# reading that environment's secret, never the other one.
resource "aws_kms_key" "app" {
  for_each = local.environments

  description             = "${var.name}: ${each.key} app secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.kms_account_administration]
  })

  tags = { Environment = each.key }
}

resource "aws_kms_alias" "app" {
  for_each = local.environments

  name          = "alias/${var.name}-${each.key}-app"
  target_key_id = aws_kms_key.app[each.key].key_id
}

resource "aws_secretsmanager_secret" "app" {
  for_each = local.environments

  # checkov:skip=CKV2_AWS_57: the value holds API keys and a database URL set by operators; rotating it needs a rotation function for the app's own format, which this stack does not own. RDS rotates the master password itself.
  name                    = "${var.name}/${each.key}/app"
  description             = "Runtime configuration of ${var.name} in ${each.key}: api_keys (id, key, read/write scopes) and database credentials (JSON)."
  kms_key_id              = aws_kms_key.app[each.key].arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = { Environment = each.key }
}

resource "aws_iam_role" "app" {
  for_each = local.environments

  name        = "${var.name}-${each.key}-app"
  description = "Assumed by ServiceAccount ${local.app_service_account} in namespace ${each.value.namespace} through IRSA"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = aws_iam_openid_connect_provider.eks.arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.oidc_issuer_host}:sub" = "system:serviceaccount:${each.value.namespace}:${local.app_service_account}"
          "${local.oidc_issuer_host}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })

  tags = { Environment = each.key }
}

resource "aws_iam_role_policy" "app" {
  for_each = local.environments

  name = "read-app-secret"
  role = aws_iam_role.app[each.key].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadAppSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        Resource = aws_secretsmanager_secret.app[each.key].arn
      },
      {
        # Secrets Manager decrypts a customer-managed key with the caller's own
        # permissions, so the role needs Decrypt on this environment's key, and
        # only when the call comes through Secrets Manager.
        Sid      = "DecryptAppSecret"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = aws_kms_key.app[each.key].arn
        Condition = {
          StringEquals = { "kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com" }
        }
      },
    ]
  })
}
