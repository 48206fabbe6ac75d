terraform {
  # 1.11: write-only arguments keep the Grafana password out of the state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 6.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    kubernetes = {
      # 2.38: data_wo on kubernetes_secret_v1.
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }
  }

  # Partial configuration, like infra/aws: key=infra/addons.tfstate (backend.hcl.example).
  backend "s3" {}
}

# The cluster comes from infra/aws's state, so nothing is copied by hand and an
# apply of infra/aws is picked up by the next plan here.
data "terraform_remote_state" "platform" {
  backend = "s3"

  config = {
    bucket = var.state_bucket
    key    = var.platform_state_key
    region = var.state_region
  }
}

locals {
  platform = data.terraform_remote_state.platform.outputs

  # Short-lived token from the caller's AWS credentials (the CI role's EKS access
  # entry decides what it may do); the AWS CLI must be on PATH.
  kube_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", local.platform.cluster_name, "--region", local.platform.region]
  }
}

# Secrets Manager only (the Grafana admin password), in the platform's region.
provider "aws" {
  region = local.platform.region

  default_tags {
    tags = {
      Project   = "order-service"
      ManagedBy = "terraform"
      Stack     = "infra/addons"
    }
  }
}

provider "kubernetes" {
  host                   = local.platform.cluster_endpoint
  cluster_ca_certificate = base64decode(local.platform.cluster_certificate_authority_data)

  exec {
    api_version = local.kube_exec.api_version
    command     = local.kube_exec.command
    args        = local.kube_exec.args
  }
}

provider "helm" {
  kubernetes = {
    host                   = local.platform.cluster_endpoint
    cluster_ca_certificate = base64decode(local.platform.cluster_certificate_authority_data)
    exec                   = local.kube_exec
  }
}
