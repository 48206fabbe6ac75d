# Prometheus's volume follows from what it must keep (infra/README.md, "Monitoring storage"):
# every active series gets one sample per scrape interval, and a compressed sample takes
# about 2 bytes. No resource here: infra/tests evaluates these locals with terraform itself.
locals {
  # The stack's scrape interval (set on Prometheus in monitoring.tf) and the app chart's
  # ServiceMonitor interval.
  prometheus_scrape_interval_seconds = 30
  prometheus_bytes_per_sample        = 2

  prometheus_block_bytes = (
    var.prometheus_retention_days * 86400 / local.prometheus_scrape_interval_seconds
    * var.prometheus_active_series * local.prometheus_bytes_per_sample
  )
  # retentionSize counts the write-ahead log and the head chunks too: a third on top of
  # the blocks. Prometheus's "GB" is GiB.
  prometheus_retention_size_gib = ceil(local.prometheus_block_bytes * 4 / 3 / pow(2, 30))
  # Compaction writes a new block before it deletes the ones it replaces: retentionSize stops
  # at 85 % of the volume.
  prometheus_volume_gib = ceil(local.prometheus_retention_size_gib / 0.85)
}
