resource "kubernetes_namespace_v1" "monitoring" {
  metadata {
    name = local.platform.monitoring_namespace
    labels = {
      # node-exporter needs host access, so baseline rather than restricted.
      "pod-security.kubernetes.io/enforce" = "baseline"
    }
  }
}

# Prometheus, Alertmanager and Grafana. The release name is part of the contract:
# Prometheus selects ServiceMonitors and PrometheusRules labelled
# release=kube-prometheus-stack (values/kube-prometheus-stack.yaml).
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
      grafana = { adminUser = local.platform.grafana_admin_username }
    }),
  ]

  set_sensitive = [{
    name  = "grafana.adminPassword"
    value = var.grafana_admin_password
  }]
}

# Serves the custom metrics API the app's HPA scales on
# (http_requests_per_second per pod, CONTRACT.md).
resource "helm_release" "prometheus_adapter" {
  name       = "prometheus-adapter"
  namespace  = kubernetes_namespace_v1.monitoring.metadata[0].name
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "prometheus-adapter"
  version    = var.prometheus_adapter_chart_version
  wait       = true

  values = [file("${path.module}/values/prometheus-adapter.yaml")]

  depends_on = [helm_release.kube_prometheus_stack]
}
