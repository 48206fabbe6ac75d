# The resource metrics API (metrics.k8s.io): the app's HPA scales on CPU and
# memory, and without it the HPA never acts, nor scales production down.
resource "helm_release" "metrics_server" {
  name       = "metrics-server"
  namespace  = "kube-system"
  repository = "https://kubernetes-sigs.github.io/metrics-server/"
  chart      = "metrics-server"
  version    = var.metrics_server_chart_version
  wait       = true

  values = [file("${path.module}/values/metrics-server.yaml")]

  # Its ServiceMonitor needs the CRDs; its Service is created once the load
  # balancer controller's webhooks answer.
  depends_on = [helm_release.kube_prometheus_stack, helm_release.aws_load_balancer_controller]
}
