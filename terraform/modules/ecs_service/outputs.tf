output "task_definition_arn" {
  description = "Task definition (latest revision)."
  value       = aws_ecs_task_definition.this.arn
}

output "service_name" {
  description = "ECS service name (null when create_service is false)."
  value       = var.create_service ? aws_ecs_service.this[0].name : null
}

output "task_role_arn" {
  description = "Task role of the application."
  value       = aws_iam_role.task.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = aws_cloudwatch_log_group.this.name
}
