# Application metrics on AWS: nothing in AWS scrapes Prometheus endpoints, so every service task
# runs an AWS Distro for OpenTelemetry (ADOT) collector sidecar that scrapes the service's own
# /metrics (127.0.0.1, the task's network namespace) and writes them in CloudWatch embedded
# metric format (awsemf exporter) to one log group; CloudWatch turns them into metrics in
# local.metrics_namespace, dimension Service (plus outcome / status where declared below), which
# the alarms in alarms.tf watch. Names are the Prometheus names of docs/contracts.md.

locals {
  metrics_namespace = "LiveViewerProfiles/${var.name}"

  # service -> the port its /metrics is on (the task definitions' LVP_*_PORT) and which series
  # go to CloudWatch with which dimensions (metric_name_selectors are regular expressions).
  metrics_scrape = {
    collector = {
      port = 9090
      declarations = [
        { dimensions = [["Service", "outcome"]], metric_name_selectors = ["^lvp_collector_events_total"] },
        {
          dimensions = [["Service"]]
          metric_name_selectors = [
            "^lvp_collector_requests_total",
            "^lvp_collector_kafka_delivery_seconds",
            "^lvp_collector_producer_queue_depth",
          ]
        },
      ]
    }
    profiles = {
      port = 9091
      declarations = [
        {
          dimensions = [["Service"]]
          metric_name_selectors = [
            "^lvp_profiles_consumer_lag",
            "^lvp_profiles_bad_messages_total",
            "^lvp_profiles_event_age_seconds",
            "^lvp_profiles_tracked_viewers",
            "^lvp_profiles_dynamodb_throttles_total",
            "^lvp_profiles_flush_seconds",
          ]
        },
      ]
    }
    viewer = {
      port = 8080
      declarations = [
        {
          dimensions            = [["Service"]]
          metric_name_selectors = ["^lvp_viewer_sse_clients", "^lvp_viewer_push_latency_seconds"]
        },
        { dimensions = [["Service", "status"]], metric_name_selectors = ["^lvp_viewer_active_viewers"] },
      ]
    }
  }

  # The ADOT collector configuration of each sidecar (passed as AOT_CONFIG_CONTENT).
  adot_config = {
    for service, m in local.metrics_scrape : service => yamlencode({
      receivers = {
        prometheus = {
          config = {
            global = { scrape_interval = "30s", scrape_timeout = "10s" }
            scrape_configs = [{
              job_name       = service
              metrics_path   = "/metrics"
              static_configs = [{ targets = ["127.0.0.1:${m.port}"], labels = { Service = service } }]
            }]
          }
        }
      }
      processors = {
        "resourcedetection/ecs" = { detectors = ["env", "ecs"] }
        batch                   = { timeout = "60s" }
      }
      exporters = {
        awsemf = {
          namespace               = local.metrics_namespace
          log_group_name          = aws_cloudwatch_log_group.metrics.name
          log_stream_name         = "${service}/{TaskId}"
          region                  = local.region
          dimension_rollup_option = "NoDimensionRollup"
          metric_declarations     = m.declarations
        }
      }
      service = {
        pipelines = {
          metrics = {
            receivers  = ["prometheus"]
            processors = ["resourcedetection/ecs", "batch"]
            exporters  = ["awsemf"]
          }
        }
      }
    })
  }
}

# The embedded-metric-format records (the metrics' raw data points; no identifiers: the series
# carry only the labels of docs/contracts.md).
resource "aws_cloudwatch_log_group" "metrics" {
  #checkov:skip=CKV_AWS_338:Raw embedded-metric-format records only; CloudWatch keeps the metrics made from them for 15 months, so a week of records suffices.
  name              = "/${var.name}/metrics"
  retention_in_days = var.metrics_log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# What the sidecar may do (on the task role it shares with the service): write its log group.
data "aws_iam_policy_document" "metrics_sidecar" {
  statement {
    sid       = "WriteEmbeddedMetricFormat"
    actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.metrics.arn, "${aws_cloudwatch_log_group.metrics.arn}:*"]
  }
}
