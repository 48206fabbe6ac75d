variable "name" {
  description = "Name prefix for every resource; also the EKS cluster name."
  type        = string
  default     = "order-service"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region for every resource in this stack."
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

# --- DNS and certificates ---------------------------------------------------

variable "domain_name" {
  description = "Apex domain of the public Route53 hosted zone, for example example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name without a trailing dot."
  }
}

variable "hosted_zone_id" {
  description = "ID of the public Route53 hosted zone for domain_name (certificate validation and external-dns)."
  type        = string

  validation {
    # AWS documents the ID as opaque uppercase letters and digits (usually starting
    # with Z); this catches a domain name or a /hostedzone/ path passed by mistake.
    condition     = can(regex("^[A-Z0-9]{5,32}$", var.hosted_zone_id))
    error_message = "hosted_zone_id must be a Route53 zone ID such as Z0123456789ABCDEFGHIJ (without /hostedzone/)."
  }
}

variable "production_subdomain" {
  description = "Label of the production host under domain_name; \"@\" serves production on the apex."
  type        = string
  default     = "@"

  validation {
    condition     = var.production_subdomain == "@" || can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.production_subdomain))
    error_message = "production_subdomain must be \"@\" or a single DNS label."
  }
}

variable "staging_subdomain" {
  description = "Label of the staging host under domain_name."
  type        = string
  default     = "staging"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.staging_subdomain))
    error_message = "staging_subdomain must be a single DNS label."
  }
}

# --- Network ----------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC; public and private subnets are carved out of it (/20 each for a /16)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /20 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones (names) to spread the subnets over, in the region. Listed explicitly so the network never grows when AWS adds a zone."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must list 2 to 4 distinct zones: EKS and the ALB need at least two."
  }

  validation {
    condition     = alltrue([for az in var.availability_zones : startswith(az, var.region)])
    error_message = "availability_zones must all be zones of var.region."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper, one zone's outage cuts egress) instead of one per zone."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention, in days, of the VPC flow log and EKS control-plane log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

# --- EKS --------------------------------------------------------------------

variable "kubernetes_version" {
  description = "EKS Kubernetes version: one of eks-versions.json, whose dates infra/tests and the plan's check hold it against."
  type        = string
  default     = "1.35"

  # EKS creates no cluster on a version past its extended support, and one past standard
  # support costs about six times the control-plane price: only versions of the calendar.
  validation {
    condition     = contains(keys(jsondecode(file("${path.module}/eks-versions.json")).versions), var.kubernetes_version)
    error_message = "kubernetes_version must be a version listed in infra/aws/eks-versions.json (MAJOR.MINOR); add a newer one there with its EKS support dates."
  }
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "Source ranges that may open a connection to the public EKS API endpoint. This is not the access control: every request is authenticated by IAM and authorised by an EKS access entry (authentication_mode API, no aws-auth ConfigMap, no anonymous access). The default admits everyone because GitHub-hosted runners come from thousands of ranges; narrow it only when every client (operators, self-hosted or static-IP runners) is inside the listed ranges."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrnetmask(c))])
    error_message = "cluster_endpoint_public_access_cidrs must hold at least one valid IPv4 CIDR."
  }
}

variable "cluster_admin_role_arn" {
  description = "IAM role ARN granted cluster-admin through an EKS access entry (the operators' SSO or break-glass role)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.cluster_admin_role_arn))
    error_message = "cluster_admin_role_arn must be an IAM role ARN."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group, in order of preference."
  type        = list(string)
  default     = ["m6i.large"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types must name at least one instance type."
  }
}

variable "node_ami_type" {
  description = "AMI type of the managed node group; must match the CPU architecture of node_instance_types."
  type        = string
  default     = "AL2023_x86_64_STANDARD"

  validation {
    condition     = contains(["AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD", "BOTTLEROCKET_x86_64", "BOTTLEROCKET_ARM_64"], var.node_ami_type)
    error_message = "node_ami_type must be an AL2023 or Bottlerocket AMI type."
  }
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the managed node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_min_size" {
  description = "Minimum number of nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.node_min_size >= 1
    error_message = "node_min_size must be at least 1."
  }
}

variable "node_desired_size" {
  description = "Initial number of nodes (later changes by the autoscaler are ignored)."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 6

  validation {
    condition     = var.node_max_size >= 1 && var.node_max_size <= 100
    error_message = "node_max_size must be between 1 and 100."
  }
}

variable "node_disk_size_gib" {
  description = "Root volume size of each node, in GiB."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_size_gib >= 20 && var.node_disk_size_gib <= 1000
    error_message = "node_disk_size_gib must be between 20 and 1000."
  }
}

variable "eks_oidc_thumbprints" {
  description = "Optional CA thumbprints for the cluster's IAM OIDC provider. Leave empty: IAM trusts the EKS issuer's certificate authority itself."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.eks_oidc_thumbprints : can(regex("^[0-9a-f]{40}$", t))])
    error_message = "Each thumbprint must be 40 lowercase hex characters (SHA-1)."
  }
}

# --- Application --------------------------------------------------------------

variable "secret_recovery_window_days" {
  description = "Days a deleted app secret can still be restored."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30
    error_message = "secret_recovery_window_days must be between 7 and 30."
  }
}

# --- Optional database --------------------------------------------------------

variable "create_database" {
  description = "Create an RDS PostgreSQL instance for the app (STORE=postgres)."
  type        = bool
  default     = false
}

variable "database_engine_version" {
  description = "RDS PostgreSQL version: a major version (minor upgrades then apply automatically) or MAJOR.MINOR."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[4-9](\\.[0-9]+)?$", var.database_engine_version))
    error_message = "database_engine_version must be PostgreSQL 14 or newer, written as MAJOR or MAJOR.MINOR."
  }
}

variable "database_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.database_instance_class, "db.")
    error_message = "database_instance_class must be an RDS instance class such as db.t4g.medium."
  }
}

variable "database_allocated_storage_gib" {
  description = "Initial storage of the database, in GiB (storage autoscaling grows it up to 5x)."
  type        = number
  default     = 20

  validation {
    condition     = var.database_allocated_storage_gib >= 20 && var.database_allocated_storage_gib <= 4000
    error_message = "database_allocated_storage_gib must be between 20 and 4000."
  }
}

variable "database_deletion_protection" {
  description = "Refuse to delete the database (AWS's deletion protection). Turn it off only to destroy the platform on purpose."
  type        = bool
  default     = true
}

variable "database_backup_retention_days" {
  description = "Days of automated RDS backups."
  type        = number
  default     = 14

  validation {
    condition     = var.database_backup_retention_days >= 7 && var.database_backup_retention_days <= 35
    error_message = "database_backup_retention_days must be between 7 and 35."
  }
}

# --- GitHub Actions -----------------------------------------------------------

variable "github_repository" {
  description = "GitHub repository allowed to assume the CI/CD roles, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be written as owner/name."
  }
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing token.actions.githubusercontent.com OIDC provider in this account; null creates one (an account can hold only one)."
  type        = string
  default     = null

  validation {
    condition     = var.github_oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.github_oidc_provider_arn))
    error_message = "github_oidc_provider_arn must be the ARN of the token.actions.githubusercontent.com OIDC provider."
  }
}

variable "state_bucket_name" {
  description = "S3 bucket holding the Terraform state of every root; CI roles get access to it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be a valid S3 bucket name."
  }
}

# --- Container registry -------------------------------------------------------

variable "ecr_keep_images" {
  description = "Tagged images the ECR repository keeps (older ones expire); every deployed revision must stay pullable for a rollback."
  type        = number
  default     = 200

  validation {
    condition     = var.ecr_keep_images >= 20 && var.ecr_keep_images <= 10000
    error_message = "ecr_keep_images must be between 20 and 10000."
  }
}
