# Offline checks of infra/aws: the AWS provider is mocked, so these runs create
# nothing. Policies are built with jsonencode(), which lets the assertions
# decode and inspect them.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111122223333" }
  }

  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }

  # The provider validates ARN arguments, so every resource whose ARN feeds
  # another one gets a well-formed mock ARN.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111122223333:role/mock" }
  }

  mock_resource "aws_iam_policy" {
    defaults = { arn = "arn:aws:iam::111122223333:policy/mock" }
  }

  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000" }
  }

  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0" }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:111122223333:log-group:mock" }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:mock-AbCdEf" }
  }

  mock_resource "aws_eks_cluster" {
    defaults = {
      arn                   = "arn:aws:eks:eu-west-1:111122223333:cluster/order-service"
      certificate_authority = [{ data = "bW9jaw==" }]
      identity = [{
        oidc = [{ issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF" }]
      }]
    }
  }

  mock_resource "aws_acm_certificate" {
    defaults = {
      arn = "arn:aws:acm:eu-west-1:111122223333:certificate/00000000-0000-0000-0000-000000000000"
      domain_validation_options = [{
        domain_name           = "example.com"
        resource_record_name  = "_0123.example.com."
        resource_record_type  = "CNAME"
        resource_record_value = "_4567.acm-validations.aws."
      }]
    }
  }

  mock_resource "aws_iam_openid_connect_provider" {
    defaults = { arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF" }
  }
}

override_resource {
  target = aws_secretsmanager_secret.app["staging"]
  values = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:order-service/staging/app-AbCdEf" }
}

override_resource {
  target = aws_secretsmanager_secret.app["production"]
  values = { arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:order-service/production/app-GhIjKl" }
}

override_resource {
  target = aws_kms_key.app["staging"]
  values = { arn = "arn:aws:kms:eu-west-1:111122223333:key/11111111-1111-1111-1111-111111111111" }
}

override_resource {
  target = aws_kms_key.app["production"]
  values = { arn = "arn:aws:kms:eu-west-1:111122223333:key/22222222-2222-2222-2222-222222222222" }
}

variables {
  domain_name            = "example.com"
  hosted_zone_id         = "Z0123456789ABCDEFGHIJ"
  cluster_admin_role_arn = "arn:aws:iam::111122223333:role/platform-admin"
  github_repository      = "example-org/order-service"
  state_bucket_name      = "example-org-tfstate"
}

run "network_is_discoverable_by_the_load_balancer_controller" {
  command = plan

  assert {
    condition     = length(aws_subnet.public) >= 2 && length(aws_subnet.private) >= 2
    error_message = "The VPC must span at least two availability zones."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : s.tags["kubernetes.io/role/elb"] == "1" && s.tags["kubernetes.io/cluster/order-service"] == "shared"])
    error_message = "Public subnets must carry kubernetes.io/role/elb=1 and the cluster tag."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.private : s.tags["kubernetes.io/role/internal-elb"] == "1" && s.tags["kubernetes.io/cluster/order-service"] == "shared"])
    error_message = "Private subnets must carry kubernetes.io/role/internal-elb=1 and the cluster tag."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : !contains(keys(s.tags), "kubernetes.io/role/internal-elb")]) && alltrue([for s in aws_subnet.private : !contains(keys(s.tags), "kubernetes.io/role/elb")])
    error_message = "A subnet must not be tagged for both internet-facing and internal load balancers."
  }

  assert {
    condition     = length(aws_nat_gateway.this) == length(aws_subnet.private) && length(aws_route.private_nat) == length(aws_subnet.private)
    error_message = "Every private subnet must leave through a NAT gateway of its own zone."
  }
}

run "cluster_logs_everything_and_encrypts_secrets" {
  command = plan

  assert {
    condition     = toset(aws_eks_cluster.this.enabled_cluster_log_types) == toset(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    error_message = "All five control-plane log types must be enabled."
  }

  assert {
    condition     = length(aws_eks_cluster.this.encryption_config) == 1 && toset(aws_eks_cluster.this.encryption_config[0].resources) == toset(["secrets"])
    error_message = "Kubernetes Secrets must be envelope-encrypted with KMS."
  }

  assert {
    condition     = aws_kms_key.eks.enable_key_rotation
    error_message = "The secrets encryption key must rotate."
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    error_message = "Nodes must reach the API through the private endpoint."
  }
}

run "nodes_run_in_private_subnets" {
  command = apply

  assert {
    condition     = aws_eks_node_group.default.subnet_ids == toset([for s in aws_subnet.private : s.id])
    error_message = "Nodes must run in the private subnets."
  }

  assert {
    condition     = aws_launch_template.node.metadata_options[0].http_tokens == "required" && aws_launch_template.node.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "Nodes must require IMDSv2 and keep pods away from the node role."
  }
}

run "app_roles_read_only_their_own_secret" {
  # apply against the mocked provider, so ARNs are known.
  command = apply

  assert {
    condition = alltrue([
      for env, p in aws_iam_role_policy.app :
      toset(flatten([for s in jsondecode(p.policy).Statement : s.Action])) == toset(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt"]) &&
      alltrue([for s in jsondecode(p.policy).Statement : s.Effect == "Allow" && !can(s.NotAction) && !can(s.NotResource)])
    ])
    error_message = "An app role may only call GetSecretValue, DescribeSecret and kms:Decrypt."
  }

  assert {
    condition = alltrue([
      for env, p in aws_iam_role_policy.app : alltrue([
        for s in jsondecode(p.policy).Statement :
        s.Resource == aws_secretsmanager_secret.app[env].arn
        if length(setintersection(toset(flatten([s.Action])), ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"])) > 0
      ])
    ])
    error_message = "The secret actions must apply to the environment's own secret ARN only."
  }

  assert {
    condition = alltrue([
      for env, p in aws_iam_role_policy.app : alltrue([
        for s in jsondecode(p.policy).Statement :
        s.Resource == aws_kms_key.app[env].arn && try(s.Condition.StringEquals["kms:ViaService"], "") == "secretsmanager.eu-west-1.amazonaws.com"
        if contains(flatten([s.Action]), "kms:Decrypt")
      ])
    ])
    error_message = "kms:Decrypt must be limited to the environment's key, through Secrets Manager."
  }

  assert {
    condition     = aws_secretsmanager_secret.app["staging"].arn != aws_secretsmanager_secret.app["production"].arn
    error_message = "Staging and production must not share a secret."
  }

  assert {
    condition     = alltrue([for env, s in aws_secretsmanager_secret.app : s.kms_key_id == aws_kms_key.app[env].arn && s.recovery_window_in_days >= 7])
    error_message = "App secrets must be encrypted with their environment's key and keep a recovery window."
  }

  assert {
    condition     = output.app_secret_names == { staging = "order-service/staging/app", production = "order-service/production/app" }
    error_message = "app_secret_names must map each environment to its secret."
  }
}

run "app_roles_trust_exactly_the_chart_service_account" {
  command = apply

  assert {
    condition = alltrue([
      for env in ["staging", "production"] :
      jsondecode(aws_iam_role.app[env].assume_role_policy).Statement[0].Condition.StringEquals["oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub"] == "system:serviceaccount:${env}:order-service"
    ])
    error_message = "The app role of each environment must trust exactly system:serviceaccount:<namespace>:order-service."
  }

  assert {
    condition = alltrue([
      for r in aws_iam_role.app :
      jsondecode(r.assume_role_policy).Statement[0].Condition.StringEquals["oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:aud"] == "sts.amazonaws.com" &&
      jsondecode(r.assume_role_policy).Statement[0].Principal.Federated == aws_iam_openid_connect_provider.eks.arn &&
      length(jsondecode(r.assume_role_policy).Statement) == 1
    ])
    error_message = "App roles must be assumable only through the cluster's OIDC provider with audience sts.amazonaws.com."
  }

  assert {
    condition     = keys(output.app_role_arns) == ["production", "staging"]
    error_message = "app_role_arns must have exactly the staging and production keys."
  }
}

run "github_roles_trust_the_right_claims" {
  command = apply

  assert {
    condition     = jsondecode(aws_iam_role.github["deploy_production"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:example-org/order-service:environment:production"]
    error_message = "The production deploy role must trust only the production environment of the repository."
  }

  assert {
    condition     = length(jsondecode(aws_iam_role.github["deploy_production"].assume_role_policy).Statement) == 1 && !can(jsondecode(aws_iam_role.github["deploy_production"].assume_role_policy).Statement[0].Condition.StringLike)
    error_message = "The production deploy role must not accept wildcard subjects."
  }

  assert {
    condition     = jsondecode(aws_iam_role.github["deploy_staging"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:example-org/order-service:environment:staging"]
    error_message = "The staging deploy role must trust only the staging environment."
  }

  assert {
    condition     = jsondecode(aws_iam_role.github["apply"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:example-org/order-service:environment:infrastructure"]
    error_message = "The administrator role must trust only the infrastructure environment."
  }

  assert {
    condition = length(setintersection(
      toset(jsondecode(aws_iam_role.github["apply"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"]),
      toset(flatten([for k, r in aws_iam_role.github : jsondecode(r.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] if k != "apply"])),
    )) == 0
    error_message = "No subject that another role trusts (a production deploy job, say) may take the administrator role."
  }

  assert {
    condition     = jsondecode(aws_iam_role.github["preview"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:example-org/order-service:environment:preview"]
    error_message = "The preview role must trust only the preview environment."
  }

  assert {
    condition     = alltrue([for r in aws_iam_role.github : jsondecode(r.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"])
    error_message = "Every GitHub role must require the sts.amazonaws.com audience."
  }

  assert {
    condition     = toset(keys(output.github_role_arns)) == toset(["plan", "apply", "deploy_staging", "deploy_production", "preview", "publish"])
    error_message = "github_role_arns must list the six job roles."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_role_policy.github_preview.policy).Statement :
      s.Condition.StringEquals["iam:PermissionsBoundary"] == aws_iam_policy.preview_boundary.arn
      if contains(try(s.Action, []), "iam:CreateRole")
    ])
    error_message = "The preview role may create execution roles only with the preview permissions boundary."
  }

  assert {
    condition     = aws_eks_access_entry.this["github_deploy_production"].kubernetes_groups == toset(["order-service-deploy-production"]) && aws_eks_access_entry.this["github_deploy_staging"].kubernetes_groups == toset(["order-service-deploy-staging"])
    error_message = "Each deploy role must enter the cluster as its own Kubernetes group, which infra/addons binds in its namespace only."
  }

  assert {
    condition     = toset(keys(aws_eks_access_policy_association.this)) == toset(["admin", "github_apply"])
    error_message = "Deploy roles must hold no EKS access policy (AmazonEKSAdminPolicy does not cover the chart's monitoring.coreos.com objects); only the admins get one."
  }

  assert {
    condition     = output.deploy_kubernetes_groups == { staging = "order-service-deploy-staging", production = "order-service-deploy-production" }
    error_message = "infra/addons binds the groups it reads from deploy_kubernetes_groups."
  }
}

run "plan_role_reads_what_plan_needs_and_no_secret" {
  command = apply

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_role_policy.github_plan.policy).Statement : [
        for a in flatten([s.Action]) : !contains(["secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParameters", "kms:Decrypt", "logs:GetLogEvents", "logs:FilterLogEvents"], a) && !endswith(a, "*")
      ]
    ]))
    error_message = "The plan role must read no secret value, parameter, log event or decrypted data, and use no action wildcard."
  }

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_role_policy.github_plan.policy).Statement : [
        for r in flatten([s.Resource]) : startswith(r, "arn:aws:s3:::example-org-tfstate/infra/") || r == "arn:aws:s3:::example-org-tfstate"
      ] if length([for a in flatten([s.Action]) : a if startswith(a, "s3:")]) > 0
    ]))
    error_message = "The plan role may read only the infra states, never the previews' or other objects."
  }

  assert {
    condition     = !contains(keys(aws_eks_access_entry.this), "github_plan")
    error_message = "The plan role must have no access to the cluster (EKS admin view would show every Secret)."
  }
}

run "preview_boundary_confines_network_interfaces" {
  command = apply

  assert {
    condition = alltrue(flatten([
      for s in jsondecode(aws_iam_policy.preview_boundary.policy).Statement : [
        for r in flatten([s.Resource]) :
        contains([for sn in aws_subnet.private : sn.arn], r) || r == aws_security_group.preview.arn || r == "arn:aws:ec2:eu-west-1:111122223333:network-interface/*"
      ] if length([for a in flatten([s.Action]) : a if contains(["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses"], a)]) > 0
    ]))
    error_message = "The preview boundary may allow network interfaces only in the private subnets with the preview security group."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_policy.preview_boundary.policy).Statement :
      try(s.Condition.ArnEquals["ec2:Subnet"], null) == [for sn in aws_subnet.private : sn.arn]
      if contains(flatten([s.Action]), "ec2:DeleteNetworkInterface")
    ])
    error_message = "Deleting or re-addressing interfaces must be limited to the preview subnets."
  }
}

run "registry_is_ecr_with_immutable_scanned_tags" {
  command = apply

  assert {
    condition     = aws_ecr_repository.app.image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.app.image_scanning_configuration[0].scan_on_push
    error_message = "The app repository must have immutable tags and scan on push."
  }

  assert {
    condition     = [for r in jsondecode(aws_ecr_lifecycle_policy.app.policy).rules : r.selection.tagStatus] == ["untagged", "any"] && jsondecode(aws_ecr_lifecycle_policy.app.policy).rules[1].selection.countNumber >= 20
    error_message = "The lifecycle policy must expire untagged layers and keep enough tagged images to roll back."
  }

  assert {
    condition     = contains(flatten([for s in jsondecode(aws_iam_role_policy.github_publish.policy).Statement : s.Action]), "ecr:PutImage") && jsondecode(aws_iam_role.github["publish"].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:example-org/order-service:ref:refs/heads/main"]
    error_message = "Only main may push images."
  }
}

run "network_policy_enforcement_is_configured" {
  command = plan

  assert {
    condition     = jsondecode(aws_eks_addon.this["vpc-cni"].configuration_values).enableNetworkPolicy == "true"
    error_message = "The VPC CNI must enforce the chart's NetworkPolicy."
  }
}

run "ebs_csi_driver_runs_with_its_own_role" {
  command = apply

  assert {
    condition     = contains(keys(aws_eks_addon.this), "aws-ebs-csi-driver") && aws_eks_addon.this["aws-ebs-csi-driver"].service_account_role_arn == aws_iam_role.ebs_csi_driver.arn
    error_message = "The EBS CSI driver must be a managed add-on that runs with its IRSA role (PersistentVolumeClaims stay Pending without it)."
  }

  assert {
    # The whole statement, so no second condition operator, principal or action slips in.
    condition = jsondecode(aws_iam_role.ebs_csi_driver.assume_role_policy).Statement == [{
      Effect    = "Allow"
      Principal = { Federated = aws_iam_openid_connect_provider.eks.arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub" = "system:serviceaccount:kube-system:ebs-csi-controller-sa"
          "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:aud" = "sts.amazonaws.com"
        }
      }
    }]
    error_message = "The EBS CSI driver's role must trust exactly kube-system:ebs-csi-controller-sa, through the cluster's OIDC provider."
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ebs_csi_driver.policy_arn == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    error_message = "The EBS CSI driver's role carries AWS's policy for the driver."
  }

  assert {
    condition     = [for k, v in aws_eks_addon.this : k if v.service_account_role_arn != null] == ["aws-ebs-csi-driver"]
    error_message = "Only the EBS CSI driver's add-on runs with an IAM role."
  }
}

run "grafana_password_lives_in_secrets_manager" {
  command = plan

  assert {
    condition     = aws_secretsmanager_secret.grafana_admin.name == "order-service/platform/grafana-admin" && aws_secretsmanager_secret.grafana_admin.kms_key_id != null
    error_message = "The Grafana admin password needs its own encrypted secret, written by infra/addons."
  }
}

run "hosts_and_certificates_per_environment" {
  command = plan

  assert {
    condition     = output.hostnames == { production = "example.com", staging = "staging.example.com" }
    error_message = "By default production serves the apex and staging the staging subdomain."
  }

  assert {
    condition     = aws_acm_certificate.this["production"].domain_name == "example.com" && aws_acm_certificate.this["staging"].domain_name == "staging.example.com"
    error_message = "Each environment needs a certificate for its own host."
  }

  assert {
    condition     = output.monitoring_namespace == "monitoring"
    error_message = "The monitoring namespace is fixed by CONTRACT.md."
  }
}

run "production_subdomain_can_be_set" {
  command = plan

  variables {
    production_subdomain = "orders"
  }

  assert {
    condition     = output.hostnames.production == "orders.example.com"
    error_message = "production_subdomain must prefix the domain."
  }
}

run "database_is_private_and_reachable_from_nodes_only" {
  command = plan

  variables {
    create_database = true
  }

  assert {
    condition     = aws_db_instance.this[0].manage_master_user_password && aws_db_instance.this[0].storage_encrypted && !aws_db_instance.this[0].publicly_accessible
    error_message = "The database must keep its password in Secrets Manager, encrypt storage and stay private."
  }

  assert {
    condition     = aws_db_instance.this[0].deletion_protection && aws_db_instance.this[0].backup_retention_period >= 7 && aws_db_instance.this[0].iam_database_authentication_enabled
    error_message = "The database needs deletion protection, backups and IAM authentication."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.database_from_nodes) == 1 && aws_vpc_security_group_ingress_rule.database_from_nodes[0].from_port == 5432 && aws_vpc_security_group_ingress_rule.database_from_nodes[0].cidr_ipv4 == null
    error_message = "PostgreSQL must be reachable on 5432 from a security group, never from a CIDR."
  }
}

run "no_database_by_default" {
  command = plan

  assert {
    condition     = length(aws_db_instance.this) == 0 && output.database_endpoint == null
    error_message = "The database is opt-in."
  }
}

# GitHub-hosted runners come from thousands of ranges: by default the endpoint
# admits any source and relies on IAM and access entries alone.
run "api_endpoint_reachable_by_hosted_runners" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["0.0.0.0/0"]) && aws_eks_cluster.this.access_config[0].authentication_mode == "API" && !aws_eks_cluster.this.access_config[0].bootstrap_cluster_creator_admin_permissions
    error_message = "By default any runner must reach the API, with authentication by IAM and access entries only."
  }
}

run "rejects_an_invalid_endpoint_range" {
  command = plan

  variables {
    cluster_endpoint_public_access_cidrs = ["10.0.0.0/33"]
  }

  expect_failures = [var.cluster_endpoint_public_access_cidrs]
}

run "rejects_old_kubernetes" {
  command = plan

  variables {
    kubernetes_version = "1.31"
  }

  expect_failures = [var.kubernetes_version]
}

run "rejects_a_version_the_calendar_does_not_list" {
  command = plan

  variables {
    kubernetes_version = "1.99"
  }

  expect_failures = [var.kubernetes_version]
}

run "rejects_a_zone_outside_the_region" {
  command = plan

  variables {
    availability_zones = ["eu-west-1a", "us-east-1a"]
  }

  expect_failures = [var.availability_zones]
}
