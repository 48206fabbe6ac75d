# One certificate per environment host, validated by DNS in the hosted zone.
resource "aws_acm_certificate" "this" {
  for_each = local.hostnames

  domain_name       = each.value
  validation_method = "DNS"

  tags = { Name = "${var.name}-${each.key}", Environment = each.key }

  lifecycle {
    create_before_destroy = true
  }
}

# Each certificate covers one name, so it has exactly one validation record;
# keying the records by environment keeps the keys known at plan time.
resource "aws_route53_record" "certificate_validation" {
  for_each = local.hostnames

  zone_id         = var.hosted_zone_id
  name            = one(aws_acm_certificate.this[each.key].domain_validation_options).resource_record_name
  type            = one(aws_acm_certificate.this[each.key].domain_validation_options).resource_record_type
  records         = [one(aws_acm_certificate.this[each.key].domain_validation_options).resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  for_each = aws_acm_certificate.this

  certificate_arn         = each.value.arn
  validation_record_fqdns = [aws_route53_record.certificate_validation[each.key].fqdn]
}
