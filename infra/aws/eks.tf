# --- Envelope encryption of Kubernetes Secrets ----------------------------------

resource "aws_kms_key" "eks" {
  description             = "${var.name}: EKS secrets envelope encryption"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  # Account administration only; EKS uses the key through the cluster role's
  # IAM policy below, which the root statement delegates to.
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.kms_account_administration]
  })
}

resource "aws_kms_alias" "eks" {
  name          = "alias/${var.name}-eks-secrets"
  target_key_id = aws_kms_key.eks.key_id
}

# --- Control plane ----------------------------------------------------------------

resource "aws_iam_role" "cluster" {
  name = "${var.name}-eks-cluster"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_iam_role_policy" "cluster_kms" {
  name = "secrets-encryption"
  role = aws_iam_role.cluster.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
      Resource = aws_kms_key.eks.arn
    }]
  })
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  # Access entries only: who may do what is in Terraform, not in the aws-auth ConfigMap.
  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.eks.arn
    }
  }

  vpc_config {
    subnet_ids = [for s in aws_subnet.private : s.id]
    # Nodes and pods use the private endpoint; the public one serves operators
    # and GitHub-hosted runners, whose addresses cannot be listed (README,
    # "Reaching the EKS API").
    endpoint_private_access = true
    # checkov:skip=CKV_AWS_39: GitHub-hosted runners and operators reach the API over the internet; every request is authenticated by IAM and authorised only through EKS access entries (authentication_mode API), so the endpoint admits no one without an access entry.
    endpoint_public_access = true
    # checkov:skip=CKV_AWS_38: the default source range is open because GitHub-hosted runners use thousands of ranges; authentication is IAM-only and authorisation is by access entry, and cluster_endpoint_public_access_cidrs narrows the range where every client has a fixed address.
    public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  }

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_iam_role_policy.cluster_kms,
    aws_cloudwatch_log_group.eks,
  ]
}

# Managed add-ons, so upgrades of the networking pieces go through the EKS API
# instead of drifting from the cluster version.
resource "aws_eks_addon" "this" {
  for_each = local.eks_addons

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  configuration_values        = each.value == null ? null : jsonencode(each.value)
  service_account_role_arn    = lookup(local.eks_addon_roles, each.key, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"

  # CoreDNS pods need nodes to run on.
  depends_on = [aws_eks_node_group.default]
}

locals {
  eks_addons = {
    # The chart ships a NetworkPolicy; the VPC CNI ignores it unless its
    # network policy agent is turned on.
    vpc-cni    = { enableNetworkPolicy = "true" }
    kube-proxy = null
    coredns    = null
    # PersistentVolumes on EBS (Prometheus and Alertmanager, infra/addons).
    aws-ebs-csi-driver = null
  }
  # Add-ons whose controller calls AWS: their IRSA role (irsa.tf).
  eks_addon_roles = {
    aws-ebs-csi-driver = aws_iam_role.ebs_csi_driver.arn
  }
}

# --- IAM OIDC provider for IRSA -----------------------------------------------------

locals {
  # Issuer without the scheme: the prefix of the condition keys in IRSA trust policies.
  oidc_issuer_host = trimprefix(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
}

resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
  # IAM validates the EKS issuer against its own trusted CAs; thumbprints are optional.
  thumbprint_list = length(var.eks_oidc_thumbprints) > 0 ? var.eks_oidc_thumbprints : null
}

# --- Access entries -----------------------------------------------------------------

locals {
  # Cluster-wide admins: the operators, and terraform apply (infra/addons installs
  # controllers into kube-system and monitoring and creates the app namespaces).
  cluster_admins = {
    admin        = var.cluster_admin_role_arn
    github_apply = aws_iam_role.github["apply"].arn
  }

  # Deploy roles hold no EKS access policy (AmazonEKSAdminPolicy does not cover
  # monitoring.coreos.com, and more than the chart needs): their access entries
  # put them in a Kubernetes group that infra/addons binds to a Role in their
  # own namespace, allowing exactly what the chart renders.
  deploy_kubernetes_groups = {
    for env, e in local.environments : env => "${var.name}-deploy-${e.namespace}"
  }
  deploy_access_entries = {
    for env, group in local.deploy_kubernetes_groups : "github_deploy_${env}" => {
      principal_arn = aws_iam_role.github["deploy_${env}"].arn
      group         = group
    }
  }

  # The plan role has no access entry: planning infra/addons reads Helm release
  # Secrets, so that plan runs with the apply role in the infrastructure
  # environment (README, "Access model").
}

resource "aws_eks_access_entry" "this" {
  for_each = merge(
    { for k, arn in local.cluster_admins : k => { principal_arn = arn, groups = null } },
    { for k, e in local.deploy_access_entries : k => { principal_arn = e.principal_arn, groups = [e.group] } },
  )

  cluster_name      = aws_eks_cluster.this.name
  principal_arn     = each.value.principal_arn
  kubernetes_groups = each.value.groups
  type              = "STANDARD"
}

resource "aws_eks_access_policy_association" "this" {
  for_each = local.cluster_admins

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_eks_access_entry.this[each.key].principal_arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }
}

# --- Managed node group ---------------------------------------------------------------

resource "aws_iam_role" "node" {
  name = "${var.name}-eks-node"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# The node role carries only what kubelet and the VPC CNI need; workloads get
# their own roles through IRSA.
resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.key}"
}

resource "aws_launch_template" "node" {
  name_prefix            = "${var.name}-node-"
  update_default_version = true

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.node_disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  # IMDSv2 only, and a hop limit of 1 so pods cannot borrow the node role:
  # every workload uses IRSA instead.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-node" }
  }
}

resource "aws_eks_node_group" "default" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "default"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = [for s in aws_subnet.private : s.id]
  ami_type        = var.node_ami_type
  capacity_type   = var.node_capacity_type
  instance_types  = var.node_instance_types

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  scaling_config {
    min_size     = var.node_min_size
    desired_size = var.node_desired_size
    max_size     = var.node_max_size
  }

  update_config {
    max_unavailable = 1
  }

  lifecycle {
    # A cluster autoscaler may change the desired size; Terraform keeps min/max.
    ignore_changes = [scaling_config[0].desired_size]

    precondition {
      condition     = var.node_min_size <= var.node_desired_size && var.node_desired_size <= var.node_max_size
      error_message = "node sizes must satisfy node_min_size <= node_desired_size <= node_max_size."
    }
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# --- Kubernetes version support ------------------------------------------------------

locals {
  eks_calendar = jsondecode(file("${path.module}/eks-versions.json"))
  eks_support  = local.eks_calendar.versions[var.kubernetes_version]
}

# A warning on every plan once the cluster's version has left standard support (extended
# support costs about six times the control-plane price, and after it EKS upgrades the
# cluster by itself). infra/tests holds the default against the same calendar offline.
check "kubernetes_version_in_standard_support" {
  assert {
    condition     = timecmp(plantimestamp(), "${local.eks_support.end_of_standard_support}T00:00:00Z") < 0
    error_message = "EKS ${var.kubernetes_version} left standard support on ${local.eks_support.end_of_standard_support} (extended support ends ${local.eks_support.end_of_extended_support}): raise kubernetes_version (infra/aws/eks-versions.json)."
  }
}
