# One ECS Fargate task definition (and service) of the live-viewer-profiles image, with its own
# log group, execution role (image pull, logs, only its own secrets) and task role.

data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  full_name = "${var.name}-${var.service}"
  container_definition = {
    name                   = var.service
    image                  = var.image
    command                = var.command
    essential              = true
    readonlyRootFilesystem = true
    privileged             = false
    user                   = "10001:10001"
    stopTimeout            = var.stop_timeout_s
    environment            = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
    secrets                = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
    portMappings           = var.container_port == null ? [] : [{ containerPort = var.container_port, protocol = "tcp" }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    healthCheck = var.health_check_url == null ? null : {
      command     = ["CMD", "python", "-m", "lvp.healthcheck", var.health_check_url]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = var.service
      }
    }
  }
}

# Optional sidecar: the ADOT collector scrapes 127.0.0.1:<port>/metrics of the service (same
# network namespace) and writes CloudWatch embedded metric format. Not essential: a metrics
# outage never stops the service.
locals {
  sidecars = var.metrics_sidecar == null ? [] : [{
    name                   = "adot-collector"
    image                  = var.metrics_sidecar.image
    essential              = false
    readonlyRootFilesystem = true
    privileged             = false
    user                   = "10001:10001"
    environment            = [{ name = "AOT_CONFIG_CONTENT", value = var.metrics_sidecar.config }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "adot"
      }
    }
  }]
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/${var.service}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# --- execution role: what ECS needs to start the container -------------------------------------------
resource "aws_iam_role" "execution" {
  name_prefix        = "${local.full_name}-exec-"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = values(var.secrets)
  }

  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  name   = "read-own-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets[0].json
}

# --- task role: what the application may do -----------------------------------------------------------
resource "aws_iam_role" "task" {
  name_prefix        = "${local.full_name}-task-"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy" "task" {
  name   = "${var.service}-app"
  role   = aws_iam_role.task.id
  policy = var.task_policy_json
}

resource "aws_iam_role_policy" "metrics" {
  count = var.metrics_sidecar == null ? 0 : 1

  name   = "${var.service}-metrics-sidecar"
  role   = aws_iam_role.task.id
  policy = var.metrics_policy_json
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.full_name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode(concat([local.container_definition], local.sidecars))

  volume {
    name = "tmp"
  }

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
}

resource "aws_ecs_service" "this" {
  count = var.create_service ? 1 : 0

  name                               = var.service
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.target_group_arn == null ? null : 60

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = var.service
      container_port   = var.container_port
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    # autoscaling owns the count once the service exists
    ignore_changes = [desired_count]
  }
}
