# CloudWatch alarms to an encrypted SNS topic: consumer lag, load balancer and target 5xx,
# DynamoDB throttles, unhealthy targets.

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
