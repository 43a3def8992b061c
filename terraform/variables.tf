# --- general ---------------------------------------------------------------------------------------
variable "name" {
  type        = string
  description = "Name prefix of every resource (lowercase letters, digits, dashes)."
  default     = "lvp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters: lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "aws_region" {
  type        = string
  description = "AWS region to deploy to."
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like eu-west-1."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for every resource."
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256])
    error_message = "tag keys must be at most 128 and values at most 256 characters."
  }
}

variable "image_tag" {
  type        = string
  description = "Tag of the application image in the ECR repository this stack creates (tags are immutable: push a new tag per release)."

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag (max 128 characters)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the DynamoDB tables and the load balancers against deletion."
  default     = true
}

# --- network ---------------------------------------------------------------------------------------
variable "vpc_id" {
  type        = string
  description = "Existing VPC to deploy into; null creates a new VPC (with public_subnet_ids/private_subnet_ids ignored)."
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be null or a VPC id (vpc-...)."
  }
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Existing public subnets (2+ AZs) for the load balancers; only with vpc_id."
  default     = []

  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "public_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Existing private subnets (2+ AZs, with a route to the internet or VPC endpoints) for tasks and MSK; only with vpc_id."
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "private_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC created when vpc_id is null."
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger."
  }
}

variable "az_count" {
  type        = number
  description = "Availability zones of the created VPC (2 or 3)."
  default     = 2

  validation {
    condition     = contains([2, 3], var.az_count)
    error_message = "az_count must be 2 or 3."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones of the created VPC; empty: the first az_count zones of the region."
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) >= 2
    error_message = "availability_zones must be empty or list at least two zones."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all AZs (cheaper) instead of one per AZ (zone-independent)."
  default     = true
}

variable "allowed_ingress_cidrs" {
  type        = list(string)
  description = "CIDR blocks allowed to reach the load balancers (trackers run in viewers' browsers, so the collector is usually public)."
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_ingress_cidrs) > 0 && alltrue([for c in var.allowed_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_ingress_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

# --- load balancers ------------------------------------------------------------------------------
variable "certificate_arn" {
  type        = string
  description = "ACM certificate for HTTPS on both load balancers; null serves plain HTTP (for trials only)."
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be null or an ACM certificate ARN."
  }
}

variable "viewer_idle_timeout_s" {
  type        = number
  description = "Idle timeout of the viewer load balancer: SSE streams stay open, so keep it well above the keep-alive interval."
  default     = 3600

  validation {
    condition     = var.viewer_idle_timeout_s >= 60 && var.viewer_idle_timeout_s <= 4000
    error_message = "viewer_idle_timeout_s must be between 60 and 4000 seconds."
  }
}

variable "alb_access_logs_bucket" {
  type        = string
  description = "Existing S3 bucket (with the ELB log delivery policy) for load balancer access logs; null (default) keeps them off. They hold every request line with its query string (GET /i: raw user ids) and the raw client IP, unredacted: see docs/deploy.md before enabling."
  default     = null

  validation {
    condition     = var.alb_access_logs_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.alb_access_logs_bucket))
    error_message = "alb_access_logs_bucket must be null or an S3 bucket name."
  }
}

variable "enable_waf" {
  type        = bool
  description = "Attach an AWS WAF web ACL (AWS managed rules + per-IP rate limit) to both load balancers."
  default     = true
}

variable "waf_log_retention_days" {
  type        = number
  description = "Retention of the WAF logs, which hold raw client IPs (keep it short)."
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90], var.waf_log_retention_days)
    error_message = "waf_log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90."
  }
}

variable "waf_rate_limit" {
  type        = number
  description = "Requests per 5 minutes per client IP allowed by the WAF rate rule."
  default     = 6000

  validation {
    condition     = var.waf_rate_limit >= 100
    error_message = "waf_rate_limit must be at least 100 (AWS minimum)."
  }
}

# --- Kafka (Amazon MSK) --------------------------------------------------------------------------
variable "msk_mode" {
  type        = string
  description = "serverless (default: MSK Serverless) or provisioned (an MSK cluster with brokers)."
  default     = "serverless"

  validation {
    condition     = contains(["serverless", "provisioned"], var.msk_mode)
    error_message = "msk_mode must be serverless or provisioned."
  }
}

variable "msk_kafka_version" {
  type        = string
  description = "Apache Kafka version of the provisioned MSK cluster."
  default     = "3.6.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(\\.tiered)?$", var.msk_kafka_version))
    error_message = "msk_kafka_version must look like 3.6.0."
  }
}

variable "msk_broker_instance_type" {
  type        = string
  description = "Broker instance type of the provisioned MSK cluster."
  default     = "kafka.m7g.large"

  validation {
    condition     = can(regex("^(express\\.)?kafka\\.[a-z0-9]+\\.[a-z0-9]+$", var.msk_broker_instance_type))
    error_message = "msk_broker_instance_type must be an MSK broker type such as kafka.m7g.large."
  }
}

variable "msk_broker_count" {
  type        = number
  description = "Brokers of the provisioned MSK cluster (a multiple of the number of private subnets)."
  default     = 3

  validation {
    condition     = var.msk_broker_count >= 2 && var.msk_broker_count <= 30
    error_message = "msk_broker_count must be between 2 and 30."
  }
}

variable "msk_broker_volume_gb" {
  type        = number
  description = "EBS volume per broker (GiB) of the provisioned MSK cluster."
  default     = 100

  validation {
    condition     = var.msk_broker_volume_gb >= 1 && var.msk_broker_volume_gb <= 16384
    error_message = "msk_broker_volume_gb must be between 1 and 16384."
  }
}

variable "topic_partitions" {
  type        = number
  description = "Partitions of the topics (LVP_TOPIC_PARTITIONS); also the most profiles tasks that can share the work."
  default     = 12

  validation {
    condition     = var.topic_partitions >= 1 && var.topic_partitions <= 1000
    error_message = "topic_partitions must be between 1 and 1000."
  }
}

variable "topics" {
  type = object({
    good    = string
    bad     = string
    changes = string
  })
  description = "Topic names (LVP_TOPIC_GOOD, LVP_TOPIC_BAD, LVP_TOPIC_CHANGES)."
  default = {
    good    = "snowplow-enriched-good"
    bad     = "snowplow-bad-rows"
    changes = "lvp-viewer-changes"
  }

  validation {
    condition     = alltrue([for t in values(var.topics) : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "topic names may contain letters, digits, '.', '_' and '-' (max 249)."
  }
}

variable "consumer_group" {
  type        = string
  description = "Kafka consumer group of the profiles service (LVP_CONSUMER_GROUP)."
  default     = "lvp-profiles"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,200}$", var.consumer_group))
    error_message = "consumer_group may contain letters, digits, '.', '_' and '-' (no ':', which hides MSK lag metrics)."
  }
}

# --- services --------------------------------------------------------------------------------------
variable "services" {
  type = map(object({
    cpu           = number
    memory        = number
    desired_count = number
    max_count     = number
  }))
  description = "Fargate size and task counts per service (collector, profiles, viewer). profiles scales between desired_count and max_count."
  default = {
    collector = { cpu = 512, memory = 1024, desired_count = 2, max_count = 6 }
    profiles  = { cpu = 1024, memory = 2048, desired_count = 2, max_count = 6 }
    viewer    = { cpu = 512, memory = 1024, desired_count = 2, max_count = 4 }
  }

  validation {
    condition     = alltrue([for k in ["collector", "profiles", "viewer"] : contains(keys(var.services), k)])
    error_message = "services must define collector, profiles and viewer."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : contains([256, 512, 1024, 2048, 4096, 8192, 16384], s.cpu)])
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.memory >= 512 && s.memory <= 122880 && s.memory >= s.cpu])
    error_message = "memory (MiB) must be between 512 and 122880 and not below cpu units."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : s.desired_count >= 1 && s.max_count >= s.desired_count])
    error_message = "desired_count must be at least 1 and max_count at least desired_count."
  }
}

variable "collector_cors_origins" {
  type        = string
  description = "LVP_CORS_ORIGINS of the collector: origins whose pages may send events (comma-separated, * for any site running the tracker)."
  default     = "*"

  validation {
    condition     = length(trimspace(var.collector_cors_origins)) > 0
    error_message = "collector_cors_origins must not be empty (use * for any origin)."
  }
}

variable "viewer_cors_origins" {
  type        = string
  description = "LVP_VIEWER_CORS_ORIGINS (and LVP_CORS_ORIGINS) of the viewer: origins allowed to call the API from a browser, comma-separated; null = only the viewer's own origin (its page). Never the collector's list: the API carries viewer profiles."
  default     = null

  validation {
    condition     = var.viewer_cors_origins == null || (length(trimspace(coalesce(var.viewer_cors_origins, " "))) > 0 && !contains(split(",", replace(coalesce(var.viewer_cors_origins, ""), " ", "")), "*"))
    error_message = "viewer_cors_origins must be null or a non-empty list of origins; * is not allowed for the API."
  }
}

variable "dynamodb_client" {
  type        = string
  description = "LVP_DYNAMODB_CLIENT: client of the profiles service's bulk DynamoDB calls: http (its own keep-alive SigV4 client) or botocore (boto3, the switch back)."
  default     = "http"

  validation {
    condition     = contains(["http", "botocore"], var.dynamodb_client)
    error_message = "dynamodb_client must be http or botocore."
  }
}

variable "collector_paths" {
  type        = string
  description = "LVP_COLLECTOR_PATHS: custom collector paths for trackers with a custom postPath, comma-separated CUSTOM=STANDARD, e.g. /acme/track=/com.snowplowanalytics.snowplow/tp2 (empty: the standard paths only)."
  default     = ""

  validation {
    condition     = var.collector_paths == "" || can(regex("^\\s*/[A-Za-z0-9._~-]+/[A-Za-z0-9._~-]+\\s*=\\s*/[A-Za-z0-9./_-]+\\s*(,\\s*/[A-Za-z0-9._~-]+/[A-Za-z0-9._~-]+\\s*=\\s*/[A-Za-z0-9./_-]+\\s*)*,?\\s*$", var.collector_paths))
    error_message = "collector_paths must be empty or comma-separated /vendor/name=/standard/path pairs."
  }
}

variable "cookie_domain" {
  type        = string
  description = "LVP_COOKIE_DOMAIN: domain attribute of the network user id cookie (empty: the collector's host)."
  default     = ""

  validation {
    condition     = var.cookie_domain == "" || can(regex("^\\.?([a-z0-9-]+\\.)+[a-z]{2,}$", var.cookie_domain))
    error_message = "cookie_domain must be empty or a domain such as .example.com."
  }
}

variable "retention_days" {
  type        = number
  description = "LVP_RETENTION_DAYS: TTL of profiles and history items in DynamoDB."
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650
    error_message = "retention_days must be between 1 and 3650."
  }
}

variable "active_shards" {
  type        = number
  description = "LVP_ACTIVE_SHARDS: shards of the active-viewer index."
  default     = 8

  validation {
    condition     = var.active_shards >= 1 && var.active_shards <= 256
    error_message = "active_shards must be between 1 and 256."
  }
}

variable "rate_limit_per_ip" {
  type        = number
  description = "LVP_RATE_LIMIT_PER_IP: requests per second per client IP at the collector; 0 = off (the WAF limits too)."
  default     = 0

  validation {
    condition     = var.rate_limit_per_ip >= 0
    error_message = "rate_limit_per_ip must not be negative."
  }
}

variable "pseudonym_cache_size" {
  type        = number
  description = "LVP_PSEUDONYM_CACHE_SIZE: identifiers whose pseudonym the collector remembers (~230 B each); about 3 per concurrent viewer."
  default     = 100000

  validation {
    condition     = var.pseudonym_cache_size >= 1
    error_message = "pseudonym_cache_size must be at least 1."
  }
}

variable "dp_media_labels" {
  type        = string
  description = "LVP_DP_MEDIA_LABELS: public catalogue of media labels for the differentially private statistics."
  default     = ""

  validation {
    condition     = length(var.dp_media_labels) <= 4096
    error_message = "dp_media_labels must be at most 4096 characters."
  }
}

variable "extra_environment" {
  type        = map(string)
  description = "Extra LVP_*/KAFKA_* variables for every service (overrides the defaults above; never secrets)."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : can(regex("^(LVP|KAFKA)_[A-Z0-9_]+$", k))])
    error_message = "extra_environment keys must be LVP_* or KAFKA_* variables."
  }

  validation {
    condition     = length(setintersection(keys(var.extra_environment), ["LVP_PSEUDONYM_KEY", "LVP_API_TOKENS", "LVP_JWT_SECRET", "LVP_DEV", "LVP_STATE_DIR"])) == 0
    error_message = "secrets come from Secrets Manager and dev settings are not for AWS: do not set them in extra_environment."
  }
}

# --- observability -------------------------------------------------------------------------------
variable "log_retention_days" {
  type        = number
  description = "CloudWatch Logs retention of the service and VPC flow logs."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (e.g. 30, 90, 365)."
  }
}

variable "alarm_email" {
  type        = string
  description = "E-mail address subscribed to the alarm topic; null for none (subscribe other endpoints to the output alarm_topic_arn)."
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be null or an e-mail address."
  }
}

variable "consumer_lag_alarm_threshold" {
  type        = number
  description = "Alarm when the profiles consumer group lags this many messages behind (MSK SumOffsetLag) for 5 minutes."
  default     = 50000

  validation {
    condition     = var.consumer_lag_alarm_threshold > 0
    error_message = "consumer_lag_alarm_threshold must be positive."
  }
}

variable "consumer_lag_scale_out_threshold" {
  type        = number
  description = "Add a profiles task when the consumer lag stays above this many messages."
  default     = 10000

  validation {
    condition     = var.consumer_lag_scale_out_threshold > 0
    error_message = "consumer_lag_scale_out_threshold must be positive."
  }
}

variable "http_5xx_alarm_threshold" {
  type        = number
  description = "Alarm when a load balancer returns more than this many 5xx responses in 5 minutes."
  default     = 25

  validation {
    condition     = var.http_5xx_alarm_threshold >= 1
    error_message = "http_5xx_alarm_threshold must be at least 1."
  }
}

variable "adot_image" {
  type        = string
  description = "AWS Distro for OpenTelemetry collector image of the metrics sidecars (pinned; scrapes /metrics into CloudWatch embedded metric format)."
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"

  validation {
    condition     = can(regex("^[a-z0-9./-]+/aws-otel-collector:v[0-9]+\\.[0-9]+\\.[0-9]+$", var.adot_image))
    error_message = "adot_image must be an aws-otel-collector image pinned to a version tag (vX.Y.Z)."
  }
}

variable "metrics_log_retention_days" {
  type        = number
  description = "Retention of the embedded-metric-format log group (the metrics themselves stay in CloudWatch Metrics for 15 months)."
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365], var.metrics_log_retention_days)
    error_message = "metrics_log_retention_days must be a CloudWatch Logs retention value up to 365."
  }
}

variable "app_consumer_lag_alarm_threshold" {
  type        = number
  description = "Alarm when a profiles task reports a partition lagging more than this many messages (lvp_profiles_consumer_lag) for 5 minutes."
  default     = 20000

  validation {
    condition     = var.app_consumer_lag_alarm_threshold > 0
    error_message = "app_consumer_lag_alarm_threshold must be positive."
  }
}

variable "bad_rows_alarm_threshold" {
  type        = number
  description = "Alarm when the collector and the profiles service produce more than this many bad rows in 5 minutes."
  default     = 500

  validation {
    condition     = var.bad_rows_alarm_threshold >= 1
    error_message = "bad_rows_alarm_threshold must be at least 1."
  }
}

variable "push_latency_alarm_s" {
  type        = number
  description = "Alarm when the average event -> SSE push latency (lvp_viewer_push_latency_seconds) stays above this many seconds for 5 minutes."
  default     = 5

  validation {
    condition     = var.push_latency_alarm_s > 0
    error_message = "push_latency_alarm_s must be positive."
  }
}

variable "sse_clients_alarm_threshold" {
  type        = number
  description = "Alarm when one viewer task holds more than this many SSE clients (lvp_viewer_sse_clients): scale the viewer out."
  default     = 5000

  validation {
    condition     = var.sse_clients_alarm_threshold >= 1
    error_message = "sse_clients_alarm_threshold must be at least 1."
  }
}

variable "status_write_delay_s" {
  description = "LVP_STATUS_WRITE_DELAY_S: a new viewer or a status change is written to DynamoDB (profile and history) this long after it, with the viewer's other changes meanwhile (docs/lazy-writes.md). 0 writes at the next flush, at the cost of a write per status change."
  type        = number
  default     = 30
  validation {
    condition     = var.status_write_delay_s >= 0
    error_message = "status_write_delay_s must be >= 0."
  }
}

variable "profile_write_interval_s" {
  description = "LVP_PROFILE_WRITE_INTERVAL_S: a profile whose only changes are pings (position, last_seen) is written to DynamoDB at most this long after its first unwritten event (docs/lazy-writes.md). Lower it to shorten the replay after a crash, at the cost of more writes."
  type        = number
  default     = 300
  validation {
    condition     = var.profile_write_interval_s > 0
    error_message = "profile_write_interval_s must be > 0."
  }
}
