# IAM roles for the cluster's controllers (infra/addons), assumed through IRSA.

locals {
  # Trust policy allowing exactly one Kubernetes ServiceAccount to assume a role.
  irsa_trust = {
    for key, sa in {
      aws_load_balancer_controller = { namespace = "kube-system", name = "aws-load-balancer-controller" }
      external_dns                 = { namespace = "kube-system", name = "external-dns" }
      # The EBS CSI driver's controller (managed add-on aws-ebs-csi-driver, eks.tf).
      ebs_csi_driver = { namespace = "kube-system", name = "ebs-csi-controller-sa" }
      } : key => jsonencode({
        Version = "2012-10-17"
        Statement = [{
          Effect    = "Allow"
          Principal = { Federated = aws_iam_openid_connect_provider.eks.arn }
          Action    = "sts:AssumeRoleWithWebIdentity"
          Condition = {
            StringEquals = {
              "${local.oidc_issuer_host}:sub" = "system:serviceaccount:${sa.namespace}:${sa.name}"
              "${local.oidc_issuer_host}:aud" = "sts.amazonaws.com"
            }
          }
        }]
    })
  }
}

# --- AWS Load Balancer Controller -------------------------------------------------

resource "aws_iam_role" "aws_load_balancer_controller" {
  name               = "${var.name}-aws-load-balancer-controller"
  assume_role_policy = local.irsa_trust.aws_load_balancer_controller
}

# The controller's published IAM policy (kubernetes-sigs/aws-load-balancer-controller,
# docs/install/iam_policy.json). Update the file together with the chart version.
resource "aws_iam_policy" "aws_load_balancer_controller" {
  name        = "${var.name}-aws-load-balancer-controller"
  description = "Permissions of the AWS Load Balancer Controller"
  policy = templatefile("${path.module}/policies/aws-load-balancer-controller.json.tftpl", {
    partition = local.partition
  })
}

resource "aws_iam_role_policy_attachment" "aws_load_balancer_controller" {
  role       = aws_iam_role.aws_load_balancer_controller.name
  policy_arn = aws_iam_policy.aws_load_balancer_controller.arn
}

# --- external-dns ---------------------------------------------------------------------

resource "aws_iam_role" "external_dns" {
  name               = "${var.name}-external-dns"
  assume_role_policy = local.irsa_trust.external_dns
}

# Changes and record listing only in the one hosted zone; ListHostedZones cannot
# be scoped to a resource in IAM.
resource "aws_iam_role_policy" "external_dns" {
  name = "route53"
  role = aws_iam_role.external_dns.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "ManageRecordsInOneZone"
        Effect = "Allow"
        Action = [
          "route53:ChangeResourceRecordSets",
          "route53:ListResourceRecordSets",
          "route53:ListTagsForResource",
        ]
        Resource = "arn:${local.partition}:route53:::hostedzone/${var.hosted_zone_id}"
      },
      {
        Sid      = "ListZones"
        Effect   = "Allow"
        Action   = ["route53:ListHostedZones"]
        Resource = "*"
      },
    ]
  })
}

# --- EBS CSI driver --------------------------------------------------------------------
# Creates, attaches and deletes the EBS volumes of PersistentVolumeClaims (Prometheus and
# Alertmanager keep their data on them); AWS's managed policy for the driver.

resource "aws_iam_role" "ebs_csi_driver" {
  name               = "${var.name}-ebs-csi-driver"
  assume_role_policy = local.irsa_trust.ebs_csi_driver
}

resource "aws_iam_role_policy_attachment" "ebs_csi_driver" {
  role       = aws_iam_role.ebs_csi_driver.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}
