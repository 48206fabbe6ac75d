resource "kubernetes_namespace_v1" "monitoring" {
  metadata {
    name = local.platform.monitoring_namespace
    labels = {
      # Prometheus, Alertmanager, Grafana, the operator and prometheus-adapter
      # need no host access; node-exporter runs in its own namespace below.
      "pod-security.kubernetes.io/enforce" = "baseline"
      "pod-security.kubernetes.io/warn"    = "restricted"
    }
  }
}

# node-exporter reads the node itself (hostNetwork, hostPID, hostPath), which
# every Pod Security profile but privileged forbids: a DaemonSet that never
# becomes ready would fail the whole kube-prometheus-stack release. It gets a
# namespace of its own, so nothing else runs with that allowance.
resource "kubernetes_namespace_v1" "node_exporter" {
  metadata {
    name = "${local.platform.monitoring_namespace}-node-exporter"
    labels = {
      "pod-security.kubernetes.io/enforce" = "privileged"
      "pod-security.kubernetes.io/warn"    = "baseline"
    }
  }
}

# Grafana's admin user reads its password from this Secret. The value is the
# one in Secrets Manager (grafana_admin.tf), written write-only: it is never in
# this root's state or plan.
resource "kubernetes_secret_v1" "grafana_admin" {
  metadata {
    name      = "grafana-admin"
    namespace = kubernetes_namespace_v1.monitoring.metadata[0].name
  }

  data_wo = {
    admin-user     = local.platform.grafana_admin_username
    admin-password = ephemeral.aws_secretsmanager_secret_version.grafana_admin.secret_string
  }
  data_wo_revision = var.grafana_admin_password_version
}

# The cluster's default StorageClass: gp3 EBS volumes of the EBS CSI driver (a managed
# add-on of infra/aws), encrypted, created in the zone of the pod that first uses them.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }
  storage_provisioner    = "ebs.csi.aws.com"
  volume_binding_mode    = "WaitForFirstConsumer"
  reclaim_policy         = "Delete"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }
}

locals {
  # A volume of the gp3 class per component, of the given size.
  gp3_claims = {
    for component, size in {
      prometheus   = "${local.prometheus_volume_gib}Gi"
      alertmanager = "2Gi"
      } : component => {
      volumeClaimTemplate = {
        spec = {
          storageClassName = kubernetes_storage_class_v1.gp3.metadata[0].name
          accessModes      = ["ReadWriteOnce"]
          resources        = { requests = { storage = size } }
        }
      }
    }
  }
  # Prometheus keeps its TSDB on a volume, for longer than the longest window a rule of the
  # app chart uses (30 days of error budget): a restart, an eviction or a node upgrade no
  # longer starts the budget from zero. retentionSize stops it short of a full volume, which
  # would otherwise stop ingestion. Sizing: infra/README.md, "Monitoring storage".
  prometheus_storage = {
    retention      = "${var.prometheus_retention_days}d"
    retentionSize  = "${local.prometheus_retention_size_gib}GB"
    scrapeInterval = "${local.prometheus_scrape_interval_seconds}s"
    storageSpec    = local.gp3_claims.prometheus
  }
  # Silences and the notification log survive a restart.
  alertmanager_storage = {
    storage = local.gp3_claims.alertmanager
  }
}

# Prometheus, Alertmanager and Grafana. The release name is part of the contract:
# Prometheus selects ServiceMonitors and PrometheusRules labelled
# release=kube-prometheus-stack (values/kube-prometheus-stack.yaml).
#
# Installed first: it brings the monitoring.coreos.com CRDs that the other
# releases' ServiceMonitors need, and it runs before the load balancer
# controller exists, so no webhook of the controller can reject its Services.
resource "helm_release" "kube_prometheus_stack" {
  name       = "kube-prometheus-stack"
  namespace  = kubernetes_namespace_v1.monitoring.metadata[0].name
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "kube-prometheus-stack"
  version    = var.kube_prometheus_stack_chart_version
  wait       = true
  timeout    = 900

  values = [
    file("${path.module}/values/kube-prometheus-stack.yaml"),
    yamlencode({
      prometheus   = { prometheusSpec = local.prometheus_storage }
      alertmanager = { alertmanagerSpec = local.alertmanager_storage }
      grafana = {
        admin = {
          existingSecret = kubernetes_secret_v1.grafana_admin.metadata[0].name
          userKey        = "admin-user"
          passwordKey    = "admin-password"
        }
      }
      prometheus-node-exporter = {
        namespaceOverride = kubernetes_namespace_v1.node_exporter.metadata[0].name
      }
    }),
  ]
}

# Serves the custom metrics API the app's HPA scales on
# (http_requests_per_second per pod, CONTRACT.md). metrics-server serves the
# resource metrics API (CPU and memory); the adapter must not register it too.
resource "helm_release" "prometheus_adapter" {
  name       = "prometheus-adapter"
  namespace  = kubernetes_namespace_v1.monitoring.metadata[0].name
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "prometheus-adapter"
  version    = var.prometheus_adapter_chart_version
  wait       = true

  values = [file("${path.module}/values/prometheus-adapter.yaml")]

  depends_on = [helm_release.kube_prometheus_stack, helm_release.aws_load_balancer_controller]
}
