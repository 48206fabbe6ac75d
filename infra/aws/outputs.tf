# Read by the workflows (CONTRACT.md) and by infra/addons through terraform_remote_state.

output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "region" {
  description = "AWS region of the platform."
  value       = var.region
}

output "cluster_endpoint" {
  description = "EKS API server endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA bundle of the EKS API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "vpc_id" {
  description = "VPC ID (the AWS Load Balancer Controller's vpcId)."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnet IDs (for example for a preview Lambda that needs the database)."
  value       = [for s in aws_subnet.private : s.id]
}

output "node_security_group_id" {
  description = "Security group of the EKS nodes and pods (the cluster security group)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, for more IRSA roles."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "app_role_arns" {
  description = "IRSA role of the app per environment (chart value serviceAccount.roleArn)."
  value       = { for env, role in aws_iam_role.app : env => role.arn }
}

output "app_secret_names" {
  description = "Runtime secret name per environment (chart value secretsManager.secretName)."
  value       = { for env, s in aws_secretsmanager_secret.app : env => s.name }
}

output "app_secret_arns" {
  description = "Runtime secret ARN per environment."
  value       = { for env, s in aws_secretsmanager_secret.app : env => s.arn }
}

output "certificate_arns" {
  description = "Validated ACM certificate per environment (chart value ingress.certificateArn)."
  value       = { for env, v in aws_acm_certificate_validation.this : env => v.certificate_arn }
}

output "hostnames" {
  description = "Public host per environment (chart value ingress.host)."
  value       = local.hostnames
}

output "github_role_arns" {
  description = "Role per GitHub Actions job kind: plan, apply, deploy_staging, deploy_production, preview, publish."
  value       = { for k, role in aws_iam_role.github : k => role.arn }
}

output "preview_permissions_boundary_arn" {
  description = "Permissions boundary infra/preview must attach to its execution roles."
  value       = aws_iam_policy.preview_boundary.arn
}

output "monitoring_namespace" {
  description = "Namespace of kube-prometheus-stack and prometheus-adapter."
  value       = "monitoring"
}

output "grafana_admin_username" {
  description = "Grafana admin user; its password is in the secret grafana_admin_secret_arn."
  value       = "admin"
}

output "grafana_admin_secret_arn" {
  description = "Secrets Manager secret holding the Grafana admin password (infra/addons writes and reads it)."
  value       = aws_secretsmanager_secret.grafana_admin.arn
}

output "ecr_repository_url" {
  description = "ECR repository the pipeline pushes the app image to (chart value image.repository)."
  value       = aws_ecr_repository.app.repository_url
}

output "deploy_kubernetes_groups" {
  description = "Kubernetes group of each deploy role's access entry; infra/addons binds it to the deployer Role in that environment's namespace."
  value       = local.deploy_kubernetes_groups
}

output "app_namespaces" {
  description = "Namespace per environment; infra/addons creates them."
  value       = { for env, e in local.environments : env => e.namespace }
}

output "preview_network" {
  description = "Subnets and security group a preview Lambda may use (store = postgres); the preview permissions boundary allows no others."
  value = {
    subnet_ids         = [for s in aws_subnet.private : s.id]
    security_group_ids = [aws_security_group.preview.id]
  }
}

output "preview_tfvars" {
  description = "infra/preview variables of every preview (the repository variable TFVARS_INFRA_PREVIEW): the database store in the preview network, or the memory store without a database."
  value       = local.preview_tfvars
}

output "domain_name" {
  description = "Apex domain (external-dns domain filter)."
  value       = var.domain_name
}

output "hosted_zone_id" {
  description = "Route53 hosted zone ID (external-dns zone filter)."
  value       = var.hosted_zone_id
}

output "aws_load_balancer_controller_role_arn" {
  description = "IRSA role of the AWS Load Balancer Controller."
  value       = aws_iam_role.aws_load_balancer_controller.arn
}

output "external_dns_role_arn" {
  description = "IRSA role of external-dns."
  value       = aws_iam_role.external_dns.arn
}

output "database_endpoint" {
  description = "RDS endpoint (host:port), or null without a database."
  value       = var.create_database ? aws_db_instance.this[0].endpoint : null
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret RDS keeps the master credentials in, or null without a database."
  value       = var.create_database ? aws_db_instance.this[0].master_user_secret[0].secret_arn : null
}
