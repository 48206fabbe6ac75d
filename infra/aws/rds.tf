# Optional PostgreSQL for STORE=postgres: private subnets only, reachable from the
# EKS nodes only, master password generated and kept by RDS in Secrets Manager.

locals {
  database_count = var.create_database ? 1 : 0
}

resource "aws_kms_key" "database" {
  count = local.database_count

  description             = "${var.name}: RDS storage, Performance Insights and master secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [local.kms_account_administration]
  })
}

resource "aws_db_subnet_group" "this" {
  count = local.database_count

  name       = var.name
  subnet_ids = [for s in aws_subnet.private : s.id]
}

resource "aws_security_group" "database" {
  count = local.database_count

  name        = "${var.name}-database"
  description = "PostgreSQL, reachable from the EKS nodes only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-database" }
}

resource "aws_vpc_security_group_ingress_rule" "database_from_nodes" {
  count = local.database_count

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the EKS nodes and pods"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

# Enforce TLS and log slow and DDL statements.
resource "aws_db_parameter_group" "this" {
  count = local.database_count

  name_prefix = "${var.name}-postgres${split(".", var.database_engine_version)[0]}-"
  family      = "postgres${split(".", var.database_engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "database_monitoring" {
  count = local.database_count

  name = "${var.name}-rds-monitoring"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "database_monitoring" {
  count = local.database_count

  role       = aws_iam_role.database_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  count = local.database_count

  identifier     = var.name
  engine         = "postgres"
  engine_version = var.database_engine_version
  instance_class = var.database_instance_class
  db_name        = "orders"
  username       = "order_service_admin"

  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.database[0].arn

  allocated_storage     = var.database_allocated_storage_gib
  max_allocated_storage = var.database_allocated_storage_gib * 5
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.database[0].arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this[0].name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true

  backup_retention_period   = var.database_backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.database_deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.database_monitoring[0].arn

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.database[0].arn
  performance_insights_retention_period = 7

  depends_on = [aws_iam_role_policy_attachment.database_monitoring]
}
