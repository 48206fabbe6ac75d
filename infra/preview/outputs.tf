output "function_url" {
  description = "Public URL of the preview (ends with a slash)."
  value       = aws_lambda_function_url.preview.function_url
}

output "function_name" {
  description = "Name of the preview Lambda function."
  # From the configuration, not the function: the migration's targeted apply (preview-deploy.sh)
  # evaluates this output before the serving function exists.
  value = local.functions.serve.name
}

output "log_group_name" {
  description = "CloudWatch log group of the preview."
  value       = aws_cloudwatch_log_group.function.name
}

output "database" {
  description = "Schema and secret of a postgres preview, null for a memory one: what preview-destroy.sh drops when the pull request closes."
  value = var.store == "postgres" ? {
    schema      = "preview_pr_${var.pr_number}"
    secret_name = var.secret_name
  } : null
}

output "migrate_function_name" {
  description = "Name of the function that migrates a postgres preview's schema (preview-deploy.sh invokes it), null for a memory preview."
  value       = try(local.functions.migrate.name, null)
}
