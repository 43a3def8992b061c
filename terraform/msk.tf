# Amazon MSK with IAM authentication: Serverless by default, a provisioned cluster as an option.
# Clients use SASL/OAUTHBEARER tokens signed by aws-msk-iam-sasl-signer-python (lvp/msk.py,
# LVP_KAFKA_MSK_IAM=true) on port 9098.

locals {
  msk_serverless   = var.msk_mode == "serverless"
  msk_cluster_name = "${var.name}-kafka"
  msk_cluster_arn  = local.msk_serverless ? aws_msk_serverless_cluster.this[0].arn : aws_msk_cluster.this[0].arn
  msk_bootstrap_brokers = (
    local.msk_serverless
    ? aws_msk_serverless_cluster.this[0].bootstrap_brokers_sasl_iam
    : aws_msk_cluster.this[0].bootstrap_brokers_sasl_iam
  )
  # arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> -> topic/... and group/... ARNs
  msk_topic_arn_prefix = replace(local.msk_cluster_arn, ":cluster/", ":topic/")
  msk_group_arn_prefix = replace(local.msk_cluster_arn, ":cluster/", ":group/")
  topic_replication    = local.msk_serverless ? 3 : min(3, var.msk_broker_count)
}

resource "aws_security_group" "msk" {
  name_prefix = "${var.name}-msk-"
  description = "Amazon MSK brokers: IAM-authenticated clients from the service tasks"
  vpc_id      = local.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_tasks" {
  security_group_id            = aws_security_group.msk.id
  description                  = "Kafka over TLS with IAM auth from the service tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
}

resource "aws_msk_serverless_cluster" "this" {
  count = local.msk_serverless ? 1 : 0

  cluster_name = local.msk_cluster_name

  vpc_config {
    subnet_ids         = local.private_subnet_ids
    security_group_ids = [aws_security_group.msk.id]
  }

  client_authentication {
    sasl {
      iam {
        enabled = true
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "msk" {
  count = local.msk_serverless ? 0 : 1

  name              = "/${var.name}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_msk_configuration" "this" {
  count = local.msk_serverless ? 0 : 1

  name           = "${var.name}-kafka"
  kafka_versions = [var.msk_kafka_version]

  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=${local.topic_replication}
    min.insync.replicas=${max(1, local.topic_replication - 1)}
    num.partitions=${var.topic_partitions}
    allow.everyone.if.no.acl.found=false
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  count = local.msk_serverless ? 0 : 1

  cluster_name           = local.msk_cluster_name
  kafka_version          = var.msk_kafka_version
  number_of_broker_nodes = var.msk_broker_count
  enhanced_monitoring    = "PER_BROKER" # consumer lag (Cluster Name, Consumer Group, Topic) is in DEFAULT already

  broker_node_group_info {
    instance_type   = var.msk_broker_instance_type
    client_subnets  = local.private_subnet_ids
    security_groups = [aws_security_group.msk.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_broker_volume_gb
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }

  client_authentication {
    unauthenticated = false

    sasl {
      iam = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.main.arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk[0].name
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.msk_broker_count % length(local.private_subnet_ids) == 0
      error_message = "msk_broker_count must be a multiple of the number of private subnets."
    }
  }
}
