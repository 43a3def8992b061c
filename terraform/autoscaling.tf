# profiles: scale on consumer lag (MSK SumOffsetLag of its group on the good topic) and CPU,
# between services.profiles.desired_count and max_count (never more tasks than partitions).
# collector and viewer: CPU target tracking.

locals {
  # MSK publishes consumer-lag metrics per cluster, consumer group and topic.
  lag_dimensions = {
    "Cluster Name"   = local.msk_cluster_name
    "Consumer Group" = var.consumer_group
    "Topic"          = var.topics.good
  }
  scaled = {
    collector = module.collector.service_name
    profiles  = module.profiles.service_name
    viewer    = module.viewer.service_name
  }
}

resource "aws_appautoscaling_target" "service" {
  for_each = local.scaled

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${each.value}"
  min_capacity       = var.services[each.key].desired_count
  max_capacity       = each.key == "profiles" ? min(var.services[each.key].max_count, var.topic_partitions) : var.services[each.key].max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each = local.scaled

  name               = "${var.name}-${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = 60
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "profiles_lag_out" {
  name               = "${var.name}-profiles-lag-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.service["profiles"].service_namespace
  scalable_dimension = aws_appautoscaling_target.service["profiles"].scalable_dimension
  resource_id        = aws_appautoscaling_target.service["profiles"].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 120
    metric_aggregation_type = "Maximum"

    # lag above the threshold: +1 task; above 5x: +2 tasks
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.consumer_lag_scale_out_threshold * 4
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = var.consumer_lag_scale_out_threshold * 4
      scaling_adjustment          = 2
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "profiles_lag_scale_out" {
  alarm_name          = "${var.name}-profiles-lag-scale-out"
  alarm_description   = "profiles consumer lag above ${var.consumer_lag_scale_out_threshold}: add tasks"
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = local.lag_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.consumer_lag_scale_out_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.profiles_lag_out.arn]
}
