variable "name" {
  type        = string
  description = "Name prefix of the stack."
}

variable "service" {
  type        = string
  description = "Service name (collector, profiles, viewer, topics)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.service))
    error_message = "service must be a short lowercase name."
  }
}

variable "cluster_arn" {
  type        = string
  description = "ECS cluster."
}

variable "image" {
  type        = string
  description = "Container image (repository:tag)."
}

variable "command" {
  type        = list(string)
  description = "Arguments to the image's `lvp` entry point, e.g. [\"collector\"]."
}

variable "environment" {
  type        = map(string)
  description = "Plain environment variables of the container."
}

variable "secrets" {
  type        = map(string)
  description = "Environment variable name -> Secrets Manager secret ARN."
  default     = {}
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the secrets and the log group."
}

variable "cpu" {
  type        = number
  description = "Fargate task CPU units."
}

variable "memory" {
  type        = number
  description = "Fargate task memory (MiB)."
}

variable "container_port" {
  type        = number
  description = "Port the container listens on (null: none)."
  default     = null
}

variable "health_check_url" {
  type        = string
  description = "URL probed inside the container by `python -m lvp.healthcheck` (null: no container health check)."
  default     = null
}

variable "create_service" {
  type        = bool
  description = "Create an ECS service; false registers only the task definition (one-shot jobs run with `aws ecs run-task`)."
  default     = true
}

variable "desired_count" {
  type        = number
  description = "Tasks of the service."
  default     = 1
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the tasks."
}

variable "target_group_arn" {
  type        = string
  description = "Load balancer target group of the service (null: not load balanced)."
  default     = null
}

variable "task_policy_json" {
  type        = string
  description = "IAM policy of the task role: what the application itself may do."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the service's log group."
}

variable "stop_timeout_s" {
  type        = number
  description = "Seconds between SIGTERM and SIGKILL (the services flush and close on SIGTERM)."
  default     = 60
}

variable "metrics_sidecar" {
  type = object({
    image  = string
    config = string
  })
  description = "AWS Distro for OpenTelemetry collector sidecar (image, collector YAML config) that scrapes the service's /metrics into CloudWatch; null for none."
  default     = null
}

variable "metrics_policy_json" {
  type        = string
  description = "IAM policy the metrics sidecar needs on the shared task role (writing its metrics log group); null without a sidecar."
  default     = null
}
