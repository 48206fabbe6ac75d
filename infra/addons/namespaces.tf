# The application namespaces (CONTRACT.md) and what the deploy roles may do in
# them. infra/aws puts each deploy role's access entry in a Kubernetes group
# (output deploy_kubernetes_groups); here that group gets the deployer Role in
# its own namespace and nothing anywhere else.

resource "kubernetes_namespace_v1" "app" {
  for_each = local.platform.app_namespaces

  metadata {
    name = each.value
    labels = {
      # The chart's pods meet the restricted profile (charts/tests check it
      # rule by rule); anything less is refused at admission.
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/audit"   = "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
      # The load balancer controller adds ALB readiness gates to these pods, so
      # a rolling update waits until the new targets are healthy in the target
      # group instead of answering 5xx while they register.
      "elbv2.k8s.aws/pod-readiness-gate-inject" = "enabled"
    }
  }
}

# Exactly what `helm upgrade --install --atomic` and `helm test` of
# charts/order-service need in one namespace. charts/tests/test_contract.py
# renders the chart for staging and production and checks every object against
# these rules, so a new kind in the chart fails there before a deploy does.
resource "kubernetes_role_v1" "deployer" {
  for_each = kubernetes_namespace_v1.app

  metadata {
    name      = "order-service-deployer"
    namespace = each.value.metadata[0].name
  }

  # Objects the chart renders.
  rule {
    api_groups = [""]
    resources  = ["services", "serviceaccounts", "configmaps"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = ["apps"]
    resources  = ["deployments"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = ["autoscaling"]
    resources  = ["horizontalpodautoscalers"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = ["policy"]
    resources  = ["poddisruptionbudgets"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["networkpolicies", "ingresses"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = ["monitoring.coreos.com"]
    resources  = ["servicemonitors", "prometheusrules"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  # The migration Job, a pre-install/pre-upgrade hook: helm creates it, watches it to the end
  # and deletes it.
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  # The `helm test` pod, and its log when it fails.
  rule {
    api_groups = [""]
    resources  = ["pods"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  rule {
    api_groups = [""]
    resources  = ["pods/log"]
    verbs      = ["get"]
  }

  # Helm keeps its release history in Secrets of the release namespace.
  rule {
    api_groups = [""]
    resources  = ["secrets"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }

  # `helm --wait` follows the rollout through its ReplicaSets and events.
  rule {
    api_groups = ["apps"]
    resources  = ["replicasets"]
    verbs      = ["get", "list", "watch"]
  }

  rule {
    api_groups = [""]
    resources  = ["events"]
    verbs      = ["get", "list", "watch"]
  }
}

resource "kubernetes_role_binding_v1" "deployer" {
  for_each = kubernetes_role_v1.deployer

  metadata {
    name      = "order-service-deployer"
    namespace = each.value.metadata[0].namespace
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = each.value.metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Group"
    name      = local.platform.deploy_kubernetes_groups[each.key]
  }
}
