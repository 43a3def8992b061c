# ECS Fargate: the collector and the viewer behind their load balancers, the profiles consumer,
# and a one-shot `lvp topics create` task definition.
#
# service_environment / service_secrets list every variable each service reads
# (lvp/service_env.py is the contract; tests/test_terraform.py checks both agree). Secrets come
# from Secrets Manager; AWS_ENDPOINT_URL, LVP_DEV and LVP_STATE_DIR are never set here.

locals {
  # The viewer's own origin: its page calls its API same-origin, so no other origin needs CORS
  # unless viewer_cors_origins lists it. The collector's origins (trackers on your sites) are
  # separate: collector_cors_origins.
  viewer_origin       = "${local.https ? "https" : "http"}://${aws_lb.this["viewer"].dns_name}"
  viewer_cors_origins = var.viewer_cors_origins == null ? local.viewer_origin : var.viewer_cors_origins

  service_environment = {
    collector = {
      KAFKA_BOOTSTRAP_SERVERS    = local.msk_bootstrap_brokers
      KAFKA_SECURITY_PROTOCOL    = "SASL_SSL"
      KAFKA_SASL_MECHANISM       = "OAUTHBEARER"
      LVP_KAFKA_MSK_IAM          = "true"
      AWS_REGION                 = local.region
      LVP_TOPIC_GOOD             = var.topics.good
      LVP_TOPIC_BAD              = var.topics.bad
      LVP_COLLECTOR_HOST         = "0.0.0.0"
      LVP_COLLECTOR_PORT         = "9090"
      LVP_CORS_ORIGINS           = var.collector_cors_origins
      LVP_SCHEMA_DIRS            = ""
      LVP_IGLU_RESOLVER          = ""
      LVP_IGLU_TIMEOUT_S         = "1"
      LVP_MAX_BODY_BYTES         = "1000000"
      LVP_MAX_EVENTS_PER_REQUEST = "500"
      LVP_RATE_LIMIT_PER_IP      = tostring(var.rate_limit_per_ip)
      LVP_TRUSTED_PROXIES        = "1" # the client IP is the one the ALB appended
      LVP_COOKIE_NAME            = "sp"
      LVP_COOKIE_DOMAIN          = var.cookie_domain
      LVP_PRODUCE_TIMEOUT_S      = "5"
      LVP_RETRY_AFTER_S          = "5"
      LVP_REQUEST_TIMEOUT_S      = "10"
      LVP_COLLECTOR_PATHS        = var.collector_paths
      LVP_METRICS_PUBLIC         = "true" # /metrics is not routed by the public load balancer
      LVP_LOG_FORMAT             = "json" # CloudWatch Logs Insights

      # privacy at the edge (docs/contracts.md): URL query values, page titles, e-commerce fields
      LVP_URL_KEEP_PARAMS         = "utm_*"
      LVP_URL_PSEUDONYMIZE_PARAMS = ""
      LVP_KEEP_PAGE_TITLE         = "false"
      LVP_KEEP_TRANSACTION_FIELDS = "false"
      LVP_PSEUDONYM_CACHE_SIZE    = tostring(var.pseudonym_cache_size)
    }

    profiles = {
      KAFKA_BOOTSTRAP_SERVERS      = local.msk_bootstrap_brokers
      KAFKA_SECURITY_PROTOCOL      = "SASL_SSL"
      KAFKA_SASL_MECHANISM         = "OAUTHBEARER"
      LVP_KAFKA_MSK_IAM            = "true"
      AWS_REGION                   = local.region
      LVP_TOPIC_GOOD               = var.topics.good
      LVP_TOPIC_BAD                = var.topics.bad
      LVP_TOPIC_CHANGES            = var.topics.changes
      LVP_CONSUMER_GROUP           = var.consumer_group
      LVP_PRODUCE_TIMEOUT_S        = "5"
      LVP_TABLE_PROFILES           = aws_dynamodb_table.profiles.name
      LVP_TABLE_HISTORY            = aws_dynamodb_table.history.name
      LVP_REORDER_WINDOW_S         = "10"
      LVP_ACTIVE_TIMEOUT_S         = "75"
      LVP_RETENTION_DAYS           = tostring(var.retention_days)
      LVP_FLUSH_INTERVAL_S         = "1"
      LVP_FLUSH_MAX_DIRTY          = "5000"
      LVP_PUBLISH_INTERVAL_S       = "0.1"
      LVP_TOUCH_INTERVAL_S         = "0.25"
      LVP_PROFILE_WRITE_INTERVAL_S = tostring(var.profile_write_interval_s)
      LVP_STATUS_WRITE_DELAY_S     = tostring(var.status_write_delay_s)
      LVP_FREEZE_AFTER_S           = "45"
      LVP_ACTIVE_SHARDS            = tostring(var.active_shards)
      LVP_PROFILES_METRICS_PORT    = "9091"
      LVP_DYNAMODB_CLIENT          = var.dynamodb_client
      LVP_LOG_FORMAT               = "json"
    }

    viewer = {
      KAFKA_BOOTSTRAP_SERVERS    = local.msk_bootstrap_brokers
      KAFKA_SECURITY_PROTOCOL    = "SASL_SSL"
      KAFKA_SASL_MECHANISM       = "OAUTHBEARER"
      LVP_KAFKA_MSK_IAM          = "true"
      AWS_REGION                 = local.region
      LVP_TOPIC_CHANGES          = var.topics.changes
      LVP_TABLE_PROFILES         = aws_dynamodb_table.profiles.name
      LVP_TABLE_HISTORY          = aws_dynamodb_table.history.name
      LVP_ACTIVE_TIMEOUT_S       = "75"
      LVP_ACTIVE_SHARDS          = tostring(var.active_shards)
      LVP_STATUS_WRITE_DELAY_S   = tostring(var.status_write_delay_s)
      LVP_VIEWER_HOST            = "0.0.0.0"
      LVP_VIEWER_PORT            = "8080"
      LVP_VIEWER_CORS_ORIGINS    = local.viewer_cors_origins # never the collector's list
      LVP_VIEWER_TRUSTED_PROXIES = "1"                       # the client address and scheme the ALB appended
      LVP_TABLE_VIEWER_STATE     = aws_dynamodb_table.viewer_state.name
      LVP_REQUEST_TIMEOUT_S      = "10"
      LVP_PUSH_INTERVAL_S        = "0.25"
      LVP_SSE_MAX_PER_TOKEN      = "20"
      LVP_METRICS_PUBLIC         = "false" # a path rule is no guard (/%6detrics): token required
      LVP_DP_EPSILON             = "balanced"
      LVP_DP_RELEASE_INTERVAL_S  = "60"
      LVP_DP_BUDGET              = "24"
      LVP_DP_WINDOW_S            = "3600"
      LVP_DP_LIFETIME_BUDGET     = "240"
      LVP_DP_MEDIA_LABELS        = var.dp_media_labels
      LVP_LOG_FORMAT             = "json"
    }

    topics = {
      KAFKA_BOOTSTRAP_SERVERS = local.msk_bootstrap_brokers
      KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
      KAFKA_SASL_MECHANISM    = "OAUTHBEARER"
      LVP_KAFKA_MSK_IAM       = "true"
      AWS_REGION              = local.region
      LVP_TOPIC_GOOD          = var.topics.good
      LVP_TOPIC_BAD           = var.topics.bad
      LVP_TOPIC_CHANGES       = var.topics.changes
      LVP_TOPIC_PARTITIONS    = tostring(var.topic_partitions)
      LVP_TOPIC_REPLICATION   = tostring(local.topic_replication)
      LVP_RETENTION_DAYS      = tostring(var.retention_days) # the changes topic's retention.ms
      LVP_LOG_FORMAT          = "json"
    }
  }

  service_secrets = {
    collector = {
      LVP_PSEUDONYM_KEY = aws_secretsmanager_secret.this["pseudonym_key"].arn
    }
    profiles = {}
    viewer = {
      LVP_API_TOKENS = aws_secretsmanager_secret.this["api_tokens"].arn
      LVP_JWT_SECRET = aws_secretsmanager_secret.this["jwt_secret"].arn
    }
    topics = {}
  }
}

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = aws_kms_key.main.arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.ecs_exec.name
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "ecs_exec" {
  name              = "/${var.name}/ecs-exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# --- security groups ---------------------------------------------------------------------------------
resource "aws_security_group" "tasks" {
  name_prefix = "${var.name}-tasks-"
  description = "live-viewer-profiles service tasks"
  vpc_id      = local.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  for_each = local.load_balanced

  security_group_id            = aws_security_group.tasks.id
  description                  = "${each.key} traffic from its load balancer"
  referenced_security_group_id = aws_security_group.alb[each.key].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (ECR, Secrets Manager, CloudWatch, STS, DynamoDB) via NAT/endpoints"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "tasks_msk" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Kafka (TLS + IAM) to Amazon MSK"
  referenced_security_group_id = aws_security_group.msk.id
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
}

# --- services ----------------------------------------------------------------------------------------
module "collector" {
  source = "./modules/ecs_service"

  name               = var.name
  service            = "collector"
  cluster_arn        = aws_ecs_cluster.main.arn
  image              = local.image
  command            = ["collector"]
  environment        = merge(local.service_environment["collector"], var.extra_environment)
  secrets            = local.service_secrets["collector"]
  kms_key_arn        = aws_kms_key.main.arn
  cpu                = var.services["collector"].cpu
  memory             = var.services["collector"].memory
  desired_count      = var.services["collector"].desired_count
  container_port     = 9090
  health_check_url   = "http://127.0.0.1:9090/health"
  target_group_arn   = aws_lb_target_group.this["collector"].arn
  subnet_ids         = local.private_subnet_ids
  security_group_ids = [aws_security_group.tasks.id]
  task_policy_json   = data.aws_iam_policy_document.collector.json
  log_retention_days = var.log_retention_days

  metrics_sidecar     = { image = var.adot_image, config = local.adot_config["collector"] }
  metrics_policy_json = data.aws_iam_policy_document.metrics_sidecar.json

  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}

module "profiles" {
  source = "./modules/ecs_service"

  name               = var.name
  service            = "profiles"
  cluster_arn        = aws_ecs_cluster.main.arn
  image              = local.image
  command            = ["profiles"]
  environment        = merge(local.service_environment["profiles"], var.extra_environment)
  secrets            = local.service_secrets["profiles"]
  kms_key_arn        = aws_kms_key.main.arn
  cpu                = var.services["profiles"].cpu
  memory             = var.services["profiles"].memory
  desired_count      = var.services["profiles"].desired_count
  health_check_url   = "http://127.0.0.1:9091/health"
  subnet_ids         = local.private_subnet_ids
  security_group_ids = [aws_security_group.tasks.id]
  task_policy_json   = data.aws_iam_policy_document.profiles.json
  log_retention_days = var.log_retention_days

  metrics_sidecar     = { image = var.adot_image, config = local.adot_config["profiles"] }
  metrics_policy_json = data.aws_iam_policy_document.metrics_sidecar.json
}

module "viewer" {
  source = "./modules/ecs_service"

  name               = var.name
  service            = "viewer"
  cluster_arn        = aws_ecs_cluster.main.arn
  image              = local.image
  command            = ["viewer"]
  environment        = merge(local.service_environment["viewer"], var.extra_environment)
  secrets            = local.service_secrets["viewer"]
  kms_key_arn        = aws_kms_key.main.arn
  cpu                = var.services["viewer"].cpu
  memory             = var.services["viewer"].memory
  desired_count      = var.services["viewer"].desired_count
  container_port     = 8080
  health_check_url   = "http://127.0.0.1:8080/health"
  target_group_arn   = aws_lb_target_group.this["viewer"].arn
  subnet_ids         = local.private_subnet_ids
  security_group_ids = [aws_security_group.tasks.id]
  task_policy_json   = data.aws_iam_policy_document.viewer.json
  log_retention_days = var.log_retention_days

  metrics_sidecar     = { image = var.adot_image, config = local.adot_config["viewer"] }
  metrics_policy_json = data.aws_iam_policy_document.metrics_sidecar.json

  depends_on = [aws_lb_listener.http, aws_lb_listener.https]
}

# One-shot: `aws ecs run-task` it once after the first apply and whenever topics change (the
# command is in the output topics_run_task_command).
module "topics" {
  source = "./modules/ecs_service"

  name               = var.name
  service            = "topics"
  cluster_arn        = aws_ecs_cluster.main.arn
  image              = local.image
  command            = ["topics", "create"]
  environment        = merge(local.service_environment["topics"], var.extra_environment)
  secrets            = local.service_secrets["topics"]
  kms_key_arn        = aws_kms_key.main.arn
  cpu                = 256
  memory             = 512
  create_service     = false
  subnet_ids         = local.private_subnet_ids
  security_group_ids = [aws_security_group.tasks.id]
  task_policy_json   = data.aws_iam_policy_document.topics.json
  log_retention_days = var.log_retention_days
}
