variable "state_bucket" {
  description = "S3 bucket holding infra/aws's state (the same bucket as this root's backend)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket must be a valid S3 bucket name."
  }
}

variable "platform_state_key" {
  description = "Key of infra/aws's state in state_bucket."
  type        = string
  default     = "infra/aws.tfstate"
}

variable "state_region" {
  description = "Region of state_bucket."
  type        = string
  default     = "eu-west-1"
}

variable "grafana_admin_password_version" {
  description = "Generation of the Grafana admin password. Raising it generates a new password into Secrets Manager and writes it to Grafana's Secret (the only way to rotate it: the value itself never passes through Terraform's state)."
  type        = number
  default     = 1

  validation {
    condition     = var.grafana_admin_password_version >= 1 && floor(var.grafana_admin_password_version) == var.grafana_admin_password_version
    error_message = "grafana_admin_password_version must be a whole number of at least 1."
  }
}

# Chart versions are pinned so a plan shows exactly what changes; bump them on purpose.

variable "aws_load_balancer_controller_chart_version" {
  description = "Version of the eks/aws-load-balancer-controller chart; keep infra/aws/policies in step with its app version."
  type        = string
  default     = "1.13.4"
}

variable "external_dns_chart_version" {
  description = "Version of the kubernetes-sigs external-dns chart."
  type        = string
  default     = "1.18.0"
}

variable "kube_prometheus_stack_chart_version" {
  description = "Version of the prometheus-community kube-prometheus-stack chart."
  type        = string
  default     = "75.15.0"
}

variable "prometheus_adapter_chart_version" {
  description = "Version of the prometheus-community prometheus-adapter chart."
  type        = string
  default     = "4.14.1"
}

variable "metrics_server_chart_version" {
  description = "Version of the kubernetes-sigs metrics-server chart."
  type        = string
  default     = "3.12.2"
}

variable "prometheus_retention_days" {
  description = "Days Prometheus keeps; at least one more than the longest window a rule of the app chart uses (30 days of error budget), which charts/tests/test_monitoring_storage.py checks."
  type        = number
  default     = 31

  validation {
    condition     = var.prometheus_retention_days >= 1 && floor(var.prometheus_retention_days) == var.prometheus_retention_days
    error_message = "prometheus_retention_days must be a whole number of days."
  }
}

variable "prometheus_active_series" {
  description = "Active series Prometheus holds (its metric prometheus_tsdb_head_series); with prometheus_retention_days it sizes Prometheus's volume (prometheus_sizing.tf, infra/README.md \"Monitoring storage\")."
  type        = number
  default     = 150000

  validation {
    condition     = var.prometheus_active_series >= 1000 && floor(var.prometheus_active_series) == var.prometheus_active_series
    error_message = "prometheus_active_series must be a whole number of at least 1000."
  }
}
