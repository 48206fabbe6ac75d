# Turns the chart's Ingress into an ALB with the ACM certificate.
#
# Order: after kube-prometheus-stack (its ServiceMonitor needs the
# monitoring.coreos.com CRDs), and before every release that creates Services
# or pods in a namespace its webhooks watch (external-dns, metrics-server,
# prometheus-adapter depend on it), so those never meet a webhook whose pods are
# still starting.
resource "helm_release" "aws_load_balancer_controller" {
  name       = "aws-load-balancer-controller"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.aws_load_balancer_controller_chart_version
  wait       = true

  values = [
    file("${path.module}/values/aws-load-balancer-controller.yaml"),
    # Region and VPC are given explicitly: the nodes' hop limit of 1 keeps pods
    # away from the instance metadata the controller would otherwise ask.
    yamlencode({
      clusterName = local.platform.cluster_name
      region      = local.platform.region
      vpcId       = local.platform.vpc_id
      serviceAccount = {
        create = true
        name   = "aws-load-balancer-controller"
        annotations = {
          "eks.amazonaws.com/role-arn" = local.platform.aws_load_balancer_controller_role_arn
        }
      }
    }),
  ]

  depends_on = [helm_release.kube_prometheus_stack]
}
