# Publishes the Ingress hosts in the one hosted zone and owns only records it
# created (TXT registry keyed by the cluster name).
resource "helm_release" "external_dns" {
  name       = "external-dns"
  namespace  = "kube-system"
  repository = "https://kubernetes-sigs.github.io/external-dns/"
  chart      = "external-dns"
  version    = var.external_dns_chart_version
  wait       = true

  values = [
    file("${path.module}/values/external-dns.yaml"),
    yamlencode({
      domainFilters = [local.platform.domain_name]
      txtOwnerId    = local.platform.cluster_name
      extraArgs     = ["--zone-id-filter=${local.platform.hosted_zone_id}"]
      env = [{
        name  = "AWS_DEFAULT_REGION"
        value = local.platform.region
      }]
      serviceAccount = {
        create = true
        name   = "external-dns"
        annotations = {
          "eks.amazonaws.com/role-arn" = local.platform.external_dns_role_arn
        }
      }
    }),
  ]

  # The ALB hostname an Ingress gets comes from the load balancer controller;
  # the ServiceMonitor needs the CRDs of kube-prometheus-stack.
  depends_on = [helm_release.aws_load_balancer_controller, helm_release.kube_prometheus_stack]
}
