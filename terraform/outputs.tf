output "collector_url" {
  description = "Collector endpoint for the Snowplow trackers (collectorUrl)."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this["collector"].dns_name}"
}

output "viewer_url" {
  description = "Live viewer page and API."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this["viewer"].dns_name}"
}

output "ecr_repository_url" {
  description = "Push the application image here (docker tag/push :image_tag)."
  value       = aws_ecr_repository.app.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster of the services."
  value       = aws_ecs_cluster.main.name
}

output "msk_bootstrap_brokers" {
  description = "MSK bootstrap servers (SASL/IAM, port 9098) = KAFKA_BOOTSTRAP_SERVERS."
  value       = local.msk_bootstrap_brokers
}

output "msk_cluster_arn" {
  description = "The MSK cluster."
  value       = local.msk_cluster_arn
}

output "dynamodb_tables" {
  description = "DynamoDB tables (LVP_TABLE_PROFILES, LVP_TABLE_HISTORY)."
  value = {
    profiles = aws_dynamodb_table.profiles.name
    history  = aws_dynamodb_table.history.name
  }
}

output "secret_arns" {
  description = "Secrets Manager secrets (put your own values with aws secretsmanager put-secret-value)."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "alarm_topic_arn" {
  description = "SNS topic of the CloudWatch alarms."
  value       = aws_sns_topic.alarms.arn
}

output "topics_run_task_command" {
  description = "Creates the Kafka topics (run once after the first apply)."
  value = join(" ", [
    "aws ecs run-task --region ${local.region} --cluster ${aws_ecs_cluster.main.name}",
    "--launch-type FARGATE --task-definition ${module.topics.task_definition_arn}",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", local.private_subnet_ids)}],securityGroups=[${aws_security_group.tasks.id}],assignPublicIp=DISABLED}'",
  ])
}
