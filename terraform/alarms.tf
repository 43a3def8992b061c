# CloudWatch alarms to an encrypted SNS topic: consumer lag, load balancer and target 5xx,
# DynamoDB throttles, unhealthy targets, and the application's own signals (consumer lag, bad rows,
# event -> push latency, SSE clients; metrics.tf).

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "consumer_lag" {
  alarm_name          = "${var.name}-consumer-lag"
  alarm_description   = "The profiles consumer group lags more than ${var.consumer_lag_alarm_threshold} messages behind ${var.topics.good} for 5 minutes."
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = local.lag_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.consumer_lag_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "elb_5xx" {
  for_each = local.load_balanced

  alarm_name          = "${var.name}-${each.key}-elb-5xx"
  alarm_description   = "The ${each.key} load balancer answered more than ${var.http_5xx_alarm_threshold} 5xx in 5 minutes (no healthy target, timeouts)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.this[each.key].arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.http_5xx_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  for_each = local.load_balanced

  alarm_name          = "${var.name}-${each.key}-target-5xx"
  alarm_description   = "The ${each.key} tasks answered more than ${var.http_5xx_alarm_threshold} 5xx in 5 minutes (e.g. 503: Kafka unavailable)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.this[each.key].arn_suffix, TargetGroup = aws_lb_target_group.this[each.key].arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.http_5xx_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  for_each = local.load_balanced

  alarm_name          = "${var.name}-${each.key}-unhealthy-targets"
  alarm_description   = "A ${each.key} task fails its load balancer health check."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.this[each.key].arn_suffix, TargetGroup = aws_lb_target_group.this[each.key].arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# On-demand tables throttle when traffic doubles faster than DynamoDB adapts (or at the account
# limits); the profiles service retries, but sustained throttling means lag.
resource "aws_cloudwatch_metric_alarm" "dynamodb_throttles" {
  for_each = {
    profiles = aws_dynamodb_table.profiles.name
    history  = aws_dynamodb_table.history.name
  }

  alarm_name          = "${var.name}-${each.key}-dynamodb-throttles"
  alarm_description   = "Requests to ${each.value} were throttled in 3 of the last 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "throttles"
    expression  = "reads + writes"
    label       = "Throttled reads + writes"
    return_data = true
  }

  metric_query {
    id = "reads"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "ReadThrottleEvents"
      dimensions  = { TableName = each.value }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "writes"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "WriteThrottleEvents"
      dimensions  = { TableName = each.value }
      stat        = "Sum"
      period      = 60
    }
  }
}

# --- the application's own signals (CloudWatch metrics from the ADOT sidecars, metrics.tf) ----------
resource "aws_cloudwatch_metric_alarm" "app_consumer_lag" {
  alarm_name          = "${var.name}-profiles-consumer-lag"
  alarm_description   = "A profiles task reports a partition of ${var.topics.good} more than ${var.app_consumer_lag_alarm_threshold} messages behind (lvp_profiles_consumer_lag) for 5 minutes."
  namespace           = local.metrics_namespace
  metric_name         = "lvp_profiles_consumer_lag"
  dimensions          = { Service = "profiles" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.app_consumer_lag_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "bad_rows" {
  alarm_name          = "${var.name}-bad-rows"
  alarm_description   = "More than ${var.bad_rows_alarm_threshold} bad rows in 5 minutes (collector events with outcome bad + profiles' unparseable messages): a tracker or an upstream pipeline sends what the schemas refuse."
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 1
  threshold           = var.bad_rows_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "bad"
    expression  = "FILL(collector, 0) + FILL(profiles, 0)"
    label       = "Bad rows per 5 minutes"
    return_data = true
  }

  metric_query {
    id = "collector"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "lvp_collector_events_total"
      dimensions  = { Service = "collector", outcome = "bad" }
      stat        = "Sum"
      period      = 300
    }
  }

  metric_query {
    id = "profiles"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "lvp_profiles_bad_messages_total"
      dimensions  = { Service = "profiles" }
      stat        = "Sum"
      period      = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "push_latency" {
  alarm_name          = "${var.name}-event-to-push-latency"
  alarm_description   = "Events reach the live page more than ${var.push_latency_alarm_s} s after the collector received them, on average, for 5 minutes (lvp_viewer_push_latency_seconds)."
  namespace           = local.metrics_namespace
  metric_name         = "lvp_viewer_push_latency_seconds"
  dimensions          = { Service = "viewer" }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.push_latency_alarm_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "sse_clients" {
  alarm_name          = "${var.name}-sse-clients"
  alarm_description   = "A viewer task holds more than ${var.sse_clients_alarm_threshold} SSE clients (lvp_viewer_sse_clients) for 5 minutes: add viewer tasks."
  namespace           = local.metrics_namespace
  metric_name         = "lvp_viewer_sse_clients"
  dimensions          = { Service = "viewer" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.sse_clients_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
